"""`ftm pull`: bring home what a hosted run trained."""

from __future__ import annotations

import sys

import typer

from ..errors import FtmError
from . import app
from .output import emit_json


@app.command()
def pull(
    run: str = typer.Argument(..., help="A succeeded run on a provider that gives its weights (together, fireworks)."),
    merged: bool = typer.Option(False, "--merged", help="Merged weights instead of the LoRA adapter (larger)."),
    max_size: str = typer.Option(None, "--max-size", help="Refuse more than this (e.g. 20GB) downloaded or "
                                 "unpacked (default: 10 times the archive's size, at least 256 MiB, and the free disk)."),
    as_json: bool = typer.Option(False, "--json", help="Print the run as JSON."),
):
    """Download a hosted run's adapter (or merged weights) into FTM_HOME and record it on the run.

    From then on `ftm generate`, `chat`, `eval`, `export` and `serve` use it like a local run's
    adapter, on the local model the base-model table maps its base to.
    """
    from .. import downloads, jobs, pulls

    with downloads.capped(downloads.parse_size(max_size) if max_size is not None else None):
        done = jobs.pull(run, merged=merged)
    if as_json:
        emit_json(done)
        return
    print(f"Pulled {done['id']} ({done['backend']}, {done['base_model']}) into {done['result_path']}")
    try:
        _, base = pulls.local_view(done["backend"], done["result_path"], done["base_model"])
        print(f"  answers on {base}: try `ftm generate {done['id']} \"Hello\"`")
    except FtmError as err:  # pulled all the same: say what using it needs
        print(f"Note: {err.line()}", file=sys.stderr)
