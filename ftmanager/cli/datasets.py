"""`ftm datasets ...`: import, validate, list, show and export datasets."""

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from ..errors import FtmError
from . import app
from .output import emit_json, table

datasets_app = typer.Typer(help="Import, validate, list, show and export datasets.", no_args_is_help=True)
app.add_typer(datasets_app, name="datasets")

FORMATS = "auto|openai|alpaca|prompt-completion|sharegpt|openai-preference|trl-preference"
Ref = Annotated[str, typer.Argument(help="Dataset id, id prefix or name.")]
Json = Annotated[bool, typer.Option("--json", help="Print JSON.")]


@datasets_app.command("add")
def add(
    file: Path = typer.Argument(..., help="A JSONL (or Alpaca JSON array) file."),
    name: str = typer.Option(None, "--name", "-n", help="A name to refer to it by (renames content already stored)."),
    fmt: str = typer.Option("auto", "--format", "-f", help=FORMATS),
    model: str = typer.Option(None, "--model", "-m", help="Validate by this model's rules (default: models.toml's)."),
    skip_invalid: bool = typer.Option(False, "--skip-invalid", help="Store the valid examples; list each record left out."),
    as_json: bool = typer.Option(False, "--json", help="Print the dataset as JSON."),
):
    """Convert a dataset to canonical chat JSONL, validate it and store it in the ledger."""
    from .. import catalog
    from ..data.known_models import checked_model

    row, new = catalog.add_dataset(file, name=name, fmt=fmt, model=checked_model(model), skip_invalid=skip_invalid)
    if as_json:
        return emit_json({**row, "new": new})
    for line, why in row.get("skipped", []):
        print(f"Skipped line {line}: {why}", file=sys.stderr)
    print(_added(row, new))


def _added(row: dict, new: bool) -> str:
    pairs = " preference" if row.get("kind") == "preference" else ""
    what = f"{row['id'][:12]} ({row['name']}, {row['n_examples']}{pairs} examples, from {row['format']})"
    if "renamed_from" in row:
        return f"Already stored as {what}; renamed from {row['renamed_from']}"
    skipped = f"; {len(row['skipped'])} record(s) skipped" if row.get("skipped") else ""
    return f"{'Added dataset' if new else 'Already stored as'} {what}{skipped}"


@datasets_app.command("validate")
def validate(
    file: Path = typer.Argument(..., help="The file to check."),
    model: str = typer.Option(None, "--model", "-m", help="Check token limits and prices for this model."),
    fmt: str = typer.Option("auto", "--format", "-f", help=FORMATS),
    provider: str = typer.Option(None, "--provider", help="Also apply this provider's rules: together or fireworks."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
):
    """Report every problem per line, then token statistics and the cost estimate."""
    from .. import data
    from ..data.known_models import checked_model
    from ..data.providers import provider_model, rules

    if provider:
        rules(provider)  # an unknown provider is one line, before the file is read
        model = model or provider_model(provider)
    report = data.validate(file, model=checked_model(model), fmt=fmt, provider=provider)
    if as_json:
        emit_json(report.as_dict())
    else:
        print(report.render())
    if not report.ok:
        raise typer.Exit(1)


@datasets_app.command("list")
def list_(as_json: Json = False):
    """List the datasets in the ledger, newest first."""
    from .. import catalog

    rows = catalog.datasets()
    if as_json:
        return emit_json(rows)
    shown = [{**r, "id": r["id"][:12], "examples": r["n_examples"]} for r in rows]
    print(table(shown, ["id", "name", "examples", "format", "created_at"]))


@datasets_app.command("show")
def show(ref: Ref, as_json: Json = False):
    """Show one dataset: where it came from, where it lies, its statistics and uploads."""
    from .. import catalog

    _shown(catalog.dataset_info(ref), as_json, _described)


def _described(info: dict) -> str:
    from .display import exported

    lines = [f"{key:>12}: {info[key]}" for key in ("id", "name", "format", "kind", "n_examples", "bytes", "source", "path",
                                                   "parent_id", "split", "created_at") if info.get(key) is not None]
    lines += [f"{'upload':>12}: {up['backend']} {up['file_id']} ({up['account']})" for up in info["uploads"]]
    lines += [f"{'export':>12}: {exported(e).removeprefix('export ')}" for e in info["exports"]]
    lines += [f"{'run':>12}: {run['id']} {run['backend']} {run['base_model']} {run['status']}" for run in info["runs"]]
    return "\n".join(lines)


def _shown(value, as_json: bool, render) -> None:
    """value as JSON when asked, else the text render(value) gives people."""
    if as_json:
        emit_json(value)
    else:
        print(render(value))


@datasets_app.command("export")
def export(
    ref: Ref,
    to: str = typer.Option(..., "--to", "-t", help="openai|together|alpaca|trl|sharegpt (preference data: openai|together|fireworks|trl)"),
    output: Path = typer.Option(None, "--output", "-o", help="File to write (default: stdout)."),
):
    """Write a stored dataset in another provider's or library's format (recorded in the ledger:
    `ftm datasets lineage` shows each export)."""
    from .. import catalog

    if output is None:
        n = _to_stdout(lambda: catalog.export_dataset(ref, to, sys.stdout))
    else:
        n = catalog.export_dataset_to(ref, to, output)
    print(f"Exported {n} examples as {to}" + (f" to {output}" if output else ""), file=sys.stderr)


@datasets_app.command("lineage")
def lineage(ref: Ref, as_json: Json = False):
    """Show the tree: dataset -> derived splits, uploads, exports -> runs (and re-runs) -> models."""
    from .. import catalog
    from .display import render_lineage

    _shown(catalog.lineage(ref), as_json, render_lineage)


def _to_stdout(export) -> int:
    """Run an export to stdout: a full disk is an error line, not a silent loss."""
    try:
        n = export()
        sys.stdout.flush()
        return n
    except OSError as e:
        if e.filename is not None:
            raise  # not stdout's
        # nothing more can reach the real stdout, not even Python's flush at exit
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        if isinstance(e, BrokenPipeError):
            raise typer.Exit(1) from None  # the reader stopped reading (`| head`): nothing to say
        raise FtmError(f"cannot write the export to standard output ({e.strerror or e})",
                       "Free some space, or write to a file with -o.") from None
