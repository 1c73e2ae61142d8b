"""`ftm compare` and `ftm eval`: runs side by side, and scored on held-out prompts."""

from __future__ import annotations

from pathlib import Path

import typer

from . import app
from .output import emit_json, table


@app.command()
def compare(
    runs: list[str] = typer.Argument(..., help="Two or more run ids."),
    plot: Path = typer.Option(None, "--plot", help="Also draw the loss curves into this PNG."),
    by: str = typer.Option("step", "--by", help="Align the curves by step or epoch."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
):
    """Compare runs: settings (differences marked), outcome, cost, losses, evaluation scores."""
    from .. import comparing
    from .display import render_compare

    result = comparing.compare(runs)
    if plot:
        comparing.plot(runs, plot, by)
    if as_json:
        return emit_json({**result, "plot": str(plot) if plot else None})
    print(render_compare(result))
    if plot:
        print(f"Loss curves written to {plot}")


@app.command("eval")
def eval_(
    runs: list[str] = typer.Argument(..., help="Run ids to evaluate."),
    data: Path = typer.Option(..., "--data", "-d", help="Held-out chats; the last assistant turn is the reference."),
    baseline: bool = typer.Option(False, "--baseline", help="Also evaluate each untuned base model."),
    max_new_tokens: int = typer.Option(128, "--max-new-tokens", help="Longest answer to generate."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON, generations included."),
):
    """Answer held-out prompts with each run's model, score them, record and show side by side."""
    from .. import evaluation

    results = evaluation.evaluate(runs, data, baseline=baseline, max_new_tokens=max_new_tokens)
    if as_json:
        return emit_json(results)
    print(table(results, ["label", "model_id", "n_examples", "exact_match", "token_f1", "rouge_l", "chrf"]))
    print()
    for i in range(len(results[0]["generations"])):
        print(f"[{i}] reference: {results[0]['generations'][i]['reference']}")
        for r in results:
            print(f"    {r['label']}: {r['generations'][i]['output']}")
