"""Tables ftm ships as TOML that a user extends with a file of the same name in FTM_HOME.

The base-model table (basemodels.py) and `ftm serve`'s served-model table (serve/table.py) are
read this way; each decides how the user's rows go over the shipped ones. Light: tomllib only.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from pathlib import Path


def user_file(shipped: Path) -> Path:
    """$FTM_HOME/<the shipped file's name> (read when present, never created)."""
    from . import paths

    return paths.home() / shipped.name


def models(shipped: Path, invalid: Callable[[Path, tomllib.TOMLDecodeError], Exception]) -> tuple[dict, dict]:
    """The [models] of the shipped file and of the user's (empty when there is none);
    invalid(path, err) is what to raise for a file that is not valid TOML."""
    user = user_file(shipped)
    return _read(shipped, invalid), (_read(user, invalid) if user.is_file() else {})


def _read(path: Path, invalid) -> dict:
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh).get("models", {})
    except tomllib.TOMLDecodeError as err:
        raise invalid(path, err) from None
