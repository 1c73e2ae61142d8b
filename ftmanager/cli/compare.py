"""`ftm compare` and `ftm eval`: runs side by side, and scored on held-out prompts."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from ..errors import InvalidInput
from . import app
from .output import emit_json, table


@app.command()
def compare(
    runs: list[str] = typer.Argument(..., help="Two or more run ids."),
    plot: Path = typer.Option(None, "--plot", help="Also draw the loss curves into this PNG."),
    by: str = typer.Option("step", "--by", help="Align the curves by step or epoch."),
    metric: str = typer.Option(None, "--metric",
                               help="Plot this metric instead of the losses (e.g. a DPO run's rewards/margins)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
):
    """Compare runs: settings (differences marked), outcome, cost, losses, evaluation scores."""
    from .. import comparing
    from .display import render_compare

    if metric and not plot:
        raise InvalidInput("--metric chooses what --plot draws", "Add --plot FILE.png.")
    result = comparing.compare(runs)
    if plot:
        comparing.plot(runs, plot, by, metric)
    if as_json:
        return emit_json({**result, "plot": str(plot) if plot else None})
    print(render_compare(result))
    if plot:
        print(f"{'Loss curves' if metric is None else metric + ' curves'} written to {plot}")


@app.command("eval")
def eval_(
    runs: list[str] = typer.Argument(..., help="Run ids to evaluate."),
    data: Path = typer.Option(..., "--data", "-d", help="Held-out chats; the last assistant turn is the reference."),
    baseline: bool = typer.Option(False, "--baseline", help="Also evaluate each untuned base model."),
    max_new_tokens: int = typer.Option(128, "--max-new-tokens", help="Longest answer to generate."),
    graders: Path = typer.Option(None, "--graders", "-g",
                                 help="JSON file of graders in OpenAI's shapes (string_check, text_similarity, score_model)."),
    judge_url: str = typer.Option(None, "--judge-url", help="OpenAI-compatible base URL for score_model judges "
                                  "(default: FTM_JUDGE_BASE_URL, else OPENAI_BASE_URL; key: FTM_JUDGE_API_KEY or OPENAI_API_KEY)."),
    judge: str = typer.Option(None, "--judge", help="On preference data: a judge model that scores every answer "
                              "against the chosen one, giving each run's win_rate against its base model."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON, generations included."),
):
    """Answer held-out prompts with each run's model; score, grade, record and show them side by side."""
    from .. import evaluation

    results = evaluation.evaluate(runs, data, baseline=baseline, max_new_tokens=max_new_tokens,
                                  graders_path=graders, judge_url=judge_url, judge=judge,
                                  say=lambda line: print(line, file=sys.stderr, flush=True))
    if as_json:
        return emit_json(results)
    print(render_eval(results))


def render_eval(results: list[dict]) -> str:
    """The scores and grades of each model as a table, what they mean, then every answer."""
    from ..evaluation import MEANINGS, SCORES

    names = list(dict.fromkeys(g["grader"] for r in results for g in r["grades"]))  # a base has no win_rate
    rows = [{"label": r["label"], "n": r["n_examples"], **{k: r[k] for k in SCORES},
             "perplexity": _perplexity(r), **{g["grader"]: g["mean"] for g in r["grades"]}} for r in results]
    lines = [table(rows, ["label", "n", *SCORES, "perplexity", *names]), ""]
    lines += [f"  {k}: {MEANINGS[k]}" for k in (*SCORES, "perplexity")]
    if any(r["perplexity_source"] == "validation_loss" for r in results):
        lines.append("  perplexity*: exp(the provider's validation loss on the run's own validation set), not this data")
    lines += [f"  {g['name']}: mean grade of {_describe(g)}" for g in results[0]["graders"]]
    lines += [f"  {n}: {MEANINGS['win_rate']}" for n in names if n.startswith("win_rate")]
    for i, generation in enumerate(results[0]["generations"]):
        lines += ["", f"[{i}] reference: {generation['reference']}"]
        lines += [f"    {r['label']}: {_one_line(r['generations'][i]['output'])}" for r in results]
    return "\n".join(lines)


def _describe(grader: dict) -> str:
    """A grader in a few words: its type and what it checks."""
    if grader["type"] == "score_model":
        low, high = grader.get("range") or (0, 1)
        return f"the judge {grader['model']} (score_model, {low:g} to {high:g})"
    how = grader.get("operation") or grader.get("evaluation_metric")
    return f"{grader['type']} {how} of {grader['input']} against {grader['reference']}"


def _one_line(text: str) -> str:
    return text.replace("\n", "\\n")


def _perplexity(result: dict) -> str | None:
    value = result["perplexity"]
    if value is None:
        return None
    return f"{value:.3g}" + ("*" if result["perplexity_source"] == "validation_loss" else "")
