"""`ftm submit`, `runs`, `show`, `watch`, `cancel`, `pause`, `resume`, `sync`, `models`, `backends`."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from ..backend import Option
from ..errors import InvalidInput
from . import app
from .output import emit_json, table
from .progress import Printer

# `ftm watch` and `ftm submit --wait` exit with how the run ended.
EXIT_CODES = {"succeeded": 0, "failed": 3, "cancelled": 4}
RUN_COLUMNS = ["id", "backend", "base_model", "status", "dataset", "result_model", "created_at"]


def _options(params: list[str], **flags) -> dict:
    """Backend options from -p key=value pairs and the named convenience flags."""
    options = {}
    for item in params or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InvalidInput(f"-p expects key=value, not {item!r}", "For example: -p lora_r=16.")
        options[key.strip().replace("-", "_")] = value
    options.update({k: v for k, v in flags.items() if v is not None})
    return options


def _finish(run: dict, as_json: bool) -> None:
    if as_json:
        emit_json(run)
    code = EXIT_CODES.get(run["status"])
    if code:
        raise typer.Exit(code)


# Flags that submit and rerun share, declared once.
Model = Annotated[str, typer.Option("--model", "-m", help="Base model (default: the backend's).")]
Params = Annotated[list[str], typer.Option("--param", "-p", help="Backend option key=value (repeatable).")]
LearningRate = Annotated[float, typer.Option("--learning-rate", help="Local: set the learning rate outright.")]
MaxLength = Annotated[int, typer.Option("--max-length", help="Local: truncate examples to N tokens.")]
NoQuantize = Annotated[bool, typer.Option("--no-quantize", help="Local: plain LoRA, no 4-bit base.")]
Gpus = Annotated[int, typer.Option("--gpus", help="Local: train on N GPUs through accelerate.")]
Wait = Annotated[bool, typer.Option("--wait", "-w", help="Follow the run until it ends.")]
Json = Annotated[bool, typer.Option("--json", help="Print the run as JSON.")]


def _settings(epochs, batch_size, lr_multiplier, params, learning_rate, max_length, no_quantize, gpus):
    """(hyperparameters, backend options) from the shared flags."""
    options = _options(params, learning_rate=learning_rate, max_length=max_length,
                       quantize="false" if no_quantize else None, gpus=gpus)
    return {"n_epochs": epochs, "batch_size": batch_size, "learning_rate_multiplier": lr_multiplier}, options


@app.command()
def submit(
    dataset: str = typer.Argument(..., help="A data file, or a dataset id/name from the ledger."),
    backend: str = typer.Option(..., "--backend", "-b", help="Where to train: see `ftm backends`."),
    model: Model = None,
    epochs: str = typer.Option("auto", "--epochs", help="N or auto."),
    batch_size: str = typer.Option("auto", "--batch-size", help="N or auto."),
    lr_multiplier: str = typer.Option("auto", "--learning-rate-multiplier", help="X or auto."),
    suffix: str = typer.Option(None, "--suffix", help="Added to the model name (1-64 characters)."),
    seed: int = typer.Option(None, "--seed", help="Seed for training and --split."),
    validation: str = typer.Option(None, "--validation", help="A validation file or dataset."),
    split: float = typer.Option(None, "--split", help="Hold out this fraction for validation."),
    params: Params = None,
    learning_rate: LearningRate = None,
    max_length: MaxLength = None,
    no_quantize: NoQuantize = False,
    gpus: Gpus = None,
    wait: Wait = False,
    as_json: Json = False,
):
    """Record a fine-tuning run in the ledger and start it on a backend."""
    from .. import jobs

    hp, options = _settings(epochs, batch_size, lr_multiplier, params, learning_rate, max_length, no_quantize, gpus)
    printer = Printer(quiet=False) if wait else None
    run = jobs.submit(dataset, backend, model, hyperparameters=hp, suffix=suffix, seed=seed,
                      validation=validation, split=split, options=options, wait=wait,
                      on_update=printer.update if printer else None)
    _report(run, wait, as_json, printer)


@app.command()
def rerun(
    run: str = typer.Argument(..., help="The run whose dataset and settings to re-run."),
    backend: str = typer.Option(..., "--backend", "-b", help="Where to re-run it."),
    model: Model = None,
    epochs: str = typer.Option(None, "--epochs", help="Override: N or auto."),
    batch_size: str = typer.Option(None, "--batch-size", help="Override: N or auto."),
    lr_multiplier: str = typer.Option(None, "--learning-rate-multiplier", help="Override: X or auto."),
    suffix: str = typer.Option(None, "--suffix", help="Override the suffix."),
    seed: int = typer.Option(None, "--seed", help="Override the seed."),
    params: Params = None,
    learning_rate: LearningRate = None,
    max_length: MaxLength = None,
    no_quantize: NoQuantize = False,
    gpus: Gpus = None,
    wait: Wait = False,
    as_json: Json = False,
):
    """Re-run a run's dataset on another backend (or model), mapping its settings across."""
    from .. import jobs

    hp, options = _settings(epochs, batch_size, lr_multiplier, params, learning_rate, max_length, no_quantize, gpus)
    printer = Printer(quiet=False) if wait else None
    new, mapped = jobs.rerun(run, backend, model, hyperparameters=hp, options=options, suffix=suffix,
                             seed=seed, wait=wait, on_update=printer.update if printer else None)
    print(f"Re-run of {new['parent_run_id']}: {mapped.summary()}", file=sys.stderr)
    _report(new, wait, as_json, printer)


def _report(run: dict, wait: bool, as_json: bool, printer: Printer | None = None) -> None:
    if printer:
        printer.done(run)
    if not as_json:
        print(f"{run['id']}  {run['backend']}  {run['base_model']}  {run['status']}"
              + (f"  {run['result_model']}" if run.get("result_model") else ""))
    if wait:
        _finish(run, as_json)
    elif as_json:
        emit_json(run)


@app.command("runs")
def runs(
    backend: str = typer.Option(None, "--backend", "-b", help="Only this backend's runs."),
    status: str = typer.Option(None, "--status", "-s", help="Only runs with this status."),
    dataset: str = typer.Option(None, "--dataset", "-d", help="Only runs of this dataset."),
    limit: int = typer.Option(100, "--limit", "-n", help="Newest N runs (0: all)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
):
    """List runs, newest first."""
    from .. import jobs

    rows = jobs.runs(backend=backend, status=status, dataset_ref=dataset, limit=limit or None)
    if as_json:
        return emit_json(rows)
    print(table([{**r, "dataset": r["dataset_id"][:12]} for r in rows], RUN_COLUMNS))


@app.command()
def show(
    run: str = typer.Argument(..., help="Run id (or a unique prefix, or the provider's job id)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
):
    """Show a run: its settings, status, error, events, metrics and checkpoints."""
    from .. import jobs
    from .display import render_run

    info = jobs.show(run)
    if as_json:
        return emit_json(info)
    print(render_run(info))


@app.command()
def watch(
    run: str = typer.Argument(..., help="Run id."),
    as_json: bool = typer.Option(False, "--json", help="Print the finished run as JSON."),
):
    """Follow a run until it ends. Exit code: 0 succeeded, 3 failed, 4 cancelled."""
    from .. import jobs

    printer = Printer(quiet=False)
    finished = jobs.watch(run, on_update=printer.update)
    printer.done(finished)
    _finish(finished, as_json)


def _act(verb: str, fn, run: str, as_json: bool) -> None:
    result = fn(run)
    if as_json:
        return emit_json(result)
    print(f"{result['id']}  {verb}  status: {result['status']}")


@app.command()
def cancel(run: str = typer.Argument(..., help="Run id."), as_json: bool = typer.Option(False, "--json")):
    """Stop a run."""
    from .. import jobs

    _act("cancel requested", jobs.cancel, run, as_json)


@app.command()
def pause(run: str = typer.Argument(..., help="Run id."), as_json: bool = typer.Option(False, "--json")):
    """Pause a running job (where the backend can)."""
    from .. import jobs

    _act("pause requested", jobs.pause, run, as_json)


@app.command()
def resume(run: str = typer.Argument(..., help="Run id."), as_json: bool = typer.Option(False, "--json")):
    """Resume a paused run, or an interrupted local one from its last checkpoint."""
    from .. import jobs

    _act("resume requested", jobs.resume, run, as_json)


@app.command()
def sync(as_json: bool = typer.Option(False, "--json", help="Print JSON.")):
    """Poll every unfinished run once and record what changed."""
    from .. import jobs

    results = jobs.sync()
    if as_json:
        return emit_json(results)
    for item in results:
        r = item["run"]
        print(f"{r['id']}  {r['backend']}  {r['status']}" + (f"  error: {item['error']}" if item["error"] else ""))
    print(f"{len(results)} unfinished run(s) polled.", file=sys.stderr)
    if any(item["error"] for item in results):
        raise typer.Exit(1)


@app.command()
def models(as_json: bool = typer.Option(False, "--json", help="Print JSON.")):
    """Every model the ledger knows (results and checkpoints), with the run behind each."""
    from .. import jobs

    rows = jobs.models()
    if as_json:
        return emit_json(rows)
    shown = [{**r, "dataset": (r["dataset_id"] or "")[:12]} for r in rows]
    print(table(shown, ["model_id", "kind", "run_id", "backend", "base_model", "dataset", "path"]))


@app.command()
def backends(as_json: bool = typer.Option(False, "--json", help="Print JSON.")):
    """List the backends and the options each takes."""
    from .. import jobs

    rows = jobs.backends()
    if as_json:
        return emit_json(rows)
    for b in rows:
        print(f"{b['name']}: {b['description']} (default model: {b['default_model'] or 'none'})")
        for key, option in b["options"].items():
            print(f"    -p {key}=...  {Option(option['help'], default=option['default']).describe()}")
