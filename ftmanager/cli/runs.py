"""`ftm submit`, `runs`, `show`, `watch`, `cancel`, `pause`, `resume`, `sync`, `models`, `backends`."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from ..errors import InvalidInput
from ..facts import CANCELLED, FAILED, HYPERPARAMETERS, SUCCEEDED, SUFFIX_MAX
from . import app
from .flags import BackendFlags, check_flags
from .output import emit_json, table
from .progress import Printer

# `ftm watch` and `ftm submit --wait` exit with how the run ended.
EXIT_CODES = {SUCCEEDED: 0, FAILED: 3, CANCELLED: 4}
RUN_COLUMNS = ["id", "backend", "base_model", "status", "dataset", "result_model", "origin", "created_at"]


def _options(params: list[str], flags: dict) -> dict:
    """Backend options from -p key=value pairs, then the flags made from backend options."""
    options = {}
    for item in params or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InvalidInput(f"-p expects key=value, not {item!r}", "For example: -p lora_r=16.")
        options[key.strip().replace("-", "_")] = value
    return {**options, **flags}


def _out(obj, as_json: bool, render) -> None:
    """obj as JSON on stdout, or render(obj) for a person."""
    text = None if as_json else render(obj)
    if as_json:
        emit_json(obj)
    elif text:
        print(text)


def _finish(run: dict, as_json: bool) -> None:
    if as_json:
        emit_json(run)
    code = EXIT_CODES.get(run["status"])
    if code:
        raise typer.Exit(code)


# Flags that submit and rerun share, declared once. A rerun's flags override its parent's
# settings; a backend's own options are flags made from its declaration (see flags.py).
Backend = Annotated[str, typer.Option("--backend", "-b", help="Where to train: see `ftm backends`.")]
Model = Annotated[str, typer.Option("--model", "-m", help="Base model (default: the backend's).")]
Epochs = Annotated[str, typer.Option("--epochs", help="N or auto (the default).")]
BatchSize = Annotated[str, typer.Option("--batch-size", help="N or auto (the default).")]
Multiplier = Annotated[str, typer.Option("--learning-rate-multiplier", help="X or auto (the default).")]
Suffix = Annotated[str, typer.Option("--suffix", help=f"Added to the model name (1-{SUFFIX_MAX} characters).")]
Seed = Annotated[int, typer.Option("--seed", help="Seed for training and --split.")]
Params = Annotated[list[str], typer.Option("--param", "-p", help="Backend option key=value (repeatable).")]
Wait = Annotated[bool, typer.Option("--wait", "-w", help="Follow the run until it ends.")]
Json = Annotated[bool, typer.Option("--json", help="Print the run as JSON.")]
Method = Annotated[str, typer.Option("--method", help="Training method: supervised (the default) or dpo.")]
Beta = Annotated[str, typer.Option("--beta", help="DPO's beta: X in (0, 2], or auto (the default).")]


def _settings(ctx: typer.Context, backend: str, epochs, batch_size, multiplier, params,
              method=None, beta=None) -> tuple[dict, dict]:
    """(hyperparameters, backend options) from the shared flags; None leaves a value as it was.
    A method's own settings (beta) may come as a flag or as -p name=value."""
    flags = ctx.meta.get("backend_flags", {})
    check_flags(flags, backend)
    hyperparameters = dict(zip(HYPERPARAMETERS, (epochs, batch_size, multiplier), strict=True))
    options = _options(params, flags)
    settings = {name: options.pop(name) for name in method_settings() if name in options}
    if beta is not None:
        settings["beta"] = beta
    if method is not None:
        hyperparameters["method"] = method
    return {**hyperparameters, **settings}, options


def method_settings() -> set[str]:
    """The names of every training method's own settings (beta), which -p passes as such."""
    from ..hyperparameters import METHODS

    return {name for names in METHODS.values() for name in names}


@app.command(cls=BackendFlags)
def submit(
    ctx: typer.Context,
    dataset: str = typer.Argument(..., help="A data file, or a dataset id/name from the ledger."),
    backend: Backend = ...,
    validation: str = typer.Option(None, "--validation", help="A validation file or dataset."),
    split: float = typer.Option(None, "--split", help="Hold out this fraction for validation."),
    model: Model = None, epochs: Epochs = None, batch_size: BatchSize = None, multiplier: Multiplier = None,
    suffix: Suffix = None, seed: Seed = None, params: Params = None, wait: Wait = False, as_json: Json = False,
    method: Method = None, beta: Beta = None,
):
    """Record a fine-tuning run in the ledger and start it on a backend."""
    from .. import jobs

    hp, options = _settings(ctx, backend, epochs, batch_size, multiplier, params, method, beta)
    printer = Printer(quiet=False) if wait else None
    run = jobs.submit(dataset, backend, model, hyperparameters=hp, suffix=suffix, seed=seed,
                      validation=validation, split=split, options=options, wait=wait,
                      on_update=printer.update if printer else None)
    _report(run, wait, as_json, printer)


@app.command(cls=BackendFlags)
def rerun(
    ctx: typer.Context,
    run: str = typer.Argument(..., help="The run whose dataset and settings to re-run."),
    backend: Backend = ...,
    model: Model = None, epochs: Epochs = None, batch_size: BatchSize = None, multiplier: Multiplier = None,
    suffix: Suffix = None, seed: Seed = None, params: Params = None, wait: Wait = False, as_json: Json = False,
    beta: Beta = None,
):
    """Re-run a run's dataset on another backend (or model), mapping its settings across.

    The flags override what the parent ran with; the rest is carried over, or said why not.
    """
    from .. import jobs

    hp, options = _settings(ctx, backend, epochs, batch_size, multiplier, params, beta=beta)
    printer = Printer(quiet=False) if wait else None
    new, mapped = jobs.rerun(run, backend, model, hyperparameters=hp, options=options, suffix=suffix,
                             seed=seed, wait=wait, on_update=printer.update if printer else None)
    upstream = getattr(mapped, "upstream", None)  # a chain: the link it trains on top of, first
    if upstream:
        link, link_mapped = upstream
        how = link_mapped.summary() if link_mapped else f"an existing re-run, {link['status']}, reused"
        print(f"{link['id']}  re-run of {link['parent_run_id']}: {how}", file=sys.stderr)
    print(f"Re-run of {new['parent_run_id']}: {mapped.summary()}"
          + (f" (on top of {new['base_run_id']}, {new['status']})" if upstream else ""), file=sys.stderr)
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
    limit: int = typer.Option(100, "--limit", "-n", help="Newest N runs."),
    every: bool = typer.Option(False, "--all", help="Every run, however many."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
):
    """List runs, newest first."""
    from .. import jobs

    if limit < 1:  # SQLite reads a negative LIMIT as none at all: say so rather than list everything
        raise InvalidInput(f"--limit must be 1 or more, not {limit}", "Try --limit 20, or --all for every run.")
    rows = jobs.runs(backend=backend, status=status, dataset_ref=dataset, limit=None if every else limit)
    _out(rows, as_json, lambda rows: table([_listed(r) for r in rows], RUN_COLUMNS))


def _listed(run: dict) -> dict:
    """A run as `ftm runs` lists it: an imported run says so, and data it never got back."""
    dataset = run["dataset_id"][:12] if run["dataset_id"] else "missing"
    return {**run, "dataset": dataset, "origin": "imported" if run.get("imported_at") else "ftm"}


@app.command()
def show(
    run: str = typer.Argument(..., help="Run id (or a unique prefix, or the provider's job id)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
):
    """Show a run: its settings, status, error, events, metrics and checkpoints."""
    from .. import jobs
    from .display import render_run

    _out(jobs.show(run), as_json, render_run)


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
    _out(fn(run), as_json, lambda result: f"{result['id']}  {verb}  status: {result['status']}")


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
    _out(results, as_json, lambda results: "\n".join(
        f"{i['run']['id']}  {i['run']['backend']}  {i['run']['status']}" + (f"  error: {i['error']}" if i["error"] else "")
        for i in results))
    print(f"{len(results)} unfinished run(s) polled.", file=sys.stderr)
    if any(item["error"] for item in results):
        raise typer.Exit(1)


@app.command()
def models(as_json: bool = typer.Option(False, "--json", help="Print JSON.")):
    """Every model the ledger knows (results and checkpoints), with the run behind each."""
    from .. import jobs

    columns = ["model_id", "kind", "run_id", "backend", "base_model", "dataset", "path"]
    _out(jobs.models(), as_json,
         lambda rows: table([{**r, "dataset": (r["dataset_id"] or "")[:12]} for r in rows], columns))


@app.command()
def backends(as_json: bool = typer.Option(False, "--json", help="Print JSON.")):
    """List the backends and the options each takes."""
    from .. import jobs

    _out(jobs.backends(), as_json, _render_backends)


def _render_backends(rows: list[dict]) -> str:
    from ..backend import Option

    lines = []
    for b in rows:
        lines.append(f"{b['name']}: {b['description']} (default model: {b['default_model'] or 'none'})")
        lines += [f"    -p {key}=...  {Option(o['help'], default=o['default']).describe()}"
                  for key, o in b["options"].items()]
    return "\n".join(lines)
