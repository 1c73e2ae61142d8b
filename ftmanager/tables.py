"""The tables users extend: ftm ships each as TOML in ftmanager/data/, and a file of the same
name in FTM_HOME goes over it (read when present, never created).

models.toml (data/known_models.py: context limits, encodings, prices), base_models.toml
(basemodels.py: a model's id on each provider) and served_models.toml (serve/table.py: what
`ftm serve` answers for) are all read here; each table keeps its own merge and its own error
line, handed in as invalid(path, err). Light: tomllib only.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from pathlib import Path

from . import paths

SHIPPED_DIR = Path(__file__).resolve().parent / "data"
MODELS, BASE_MODELS, SERVED_MODELS = "models.toml", "base_models.toml", "served_models.toml"

Invalid = Callable[[Path, tomllib.TOMLDecodeError], Exception]


def shipped(name: str) -> Path:
    """The table ftm ships under this file name."""
    return SHIPPED_DIR / name


def user_file(name: str) -> Path:
    """$FTM_HOME/<name>: the user's rows for that table."""
    return paths.home_path() / name


def read(path: Path, invalid: Invalid, unreadable=None) -> dict:
    """One TOML file as a dict; invalid(path, err) is what to raise when it is not valid TOML, and
    unreadable(path, why), when given, what to raise for a folder, an unreadable file or bad UTF-8."""
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as err:
        raise invalid(path, err) from None
    except (OSError, UnicodeDecodeError) as err:
        if unreadable is None:
            raise
        why = ("is a folder, not a file" if isinstance(err, IsADirectoryError) else "is not UTF-8 text"
               if isinstance(err, UnicodeDecodeError) else f"cannot be read ({err.strerror})")
        raise unreadable(path, why) from None


def both(name: str, invalid: Invalid) -> tuple[dict, dict]:
    """The shipped table and the user's (empty when there is none), each whole."""
    user = user_file(name)
    return read(shipped(name), invalid), (read(user, invalid) if user.is_file() else {})


def models(name: str, invalid: Invalid) -> tuple[dict, dict]:
    """The [models] of the shipped table and of the user's."""
    ours, theirs = both(name, invalid)
    return ours.get("models", {}), theirs.get("models", {})
