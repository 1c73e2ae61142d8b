"""The `ftm` command: a thin skin over the ftmanager library.

Each command parses its flags, makes one library call and prints. Commands live in
modules by topic; each module adds its commands to `app` (or a sub-app) when imported.
"""

import sys

import typer

from ..errors import FtmError

app = typer.Typer(
    name="ftm",
    help="ftm: fine-tuning manager. One ledger for every dataset, run and model, "
    "on OpenAI or on your own hardware.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

# Importing a module registers its commands. Keep these imports light: no torch, no openai.
from . import runs, use, pull, compare, datasets  # noqa: E402,F401  (order = order in --help)
from . import standin  # noqa: E402,F401
from . import serve  # noqa: E402,F401
from . import ui  # noqa: E402,F401


def _sweep() -> None:
    """Clear what a killed ftm left outside FTM_HOME (a partial export), before any command."""
    from ..tempfiles import sweep_noted

    try:
        sweep_noted()
    except (OSError, FtmError):
        pass  # an unusable FTM_HOME is the command's to report, not this tidy-up's


def main() -> None:
    """Entry point: user errors become one line on stderr and exit code 1."""
    try:
        _sweep()
        app()
    except FtmError as err:
        print(f"Error: {err.line()}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print("Interrupted.", file=sys.stderr)
        sys.exit(130)
