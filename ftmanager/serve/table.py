"""The served-models table: base-model names a client asks for -> the local model behind each.

Shipped as ftmanager/data/served_models.toml; $FTM_HOME/served_models.toml overrides it
name by name. Read on every lookup (it is tiny), so an edit needs no restart. `ftm serve`
checks the whole table before it listens (check(): one line naming the file and what is wrong);
a table broken by an edit while serving is logged, and the last good one keeps answering.
A client is never told the server's paths: only "served_models.toml in the server's FTM_HOME".
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from .. import tables
from ..errors import InvalidInput
from ..front.state import ApiError

SHIPPED = tables.shipped(tables.SERVED_MODELS)
ROW_KEYS = ("local", "options")
WHERE = "served_models.toml in the server's FTM_HOME"  # what a client is told instead of a path
log = logging.getLogger("ftm.serve")
_last_good: dict = {}


@dataclass(frozen=True)
class Served:
    """One base-model name: the local model that trains and answers for it, and job options."""

    name: str
    local: str
    options: dict = field(default_factory=dict)


def user_path() -> Path:
    """$FTM_HOME/served_models.toml (read when present, never created)."""
    return tables.user_file(tables.SERVED_MODELS)


def check() -> dict[str, Served]:
    """The whole table, or InvalidInput naming the file and the first thing wrong in it."""
    entries = _rows(SHIPPED)
    user = user_path()
    if user.exists() or user.is_symlink():
        entries.update(_rows(user))
    return {name: Served(name, row["local"], dict(row.get("options") or {})) for name, row in entries.items()}


def check_options(served: dict[str, Served]) -> None:
    """Each row's options as the local backend takes them, or one line naming the row (at start:
    a row edited in later is checked when a job is submitted on it)."""
    from .. import registry
    from ..errors import FtmError

    backend = registry.get("local")
    for name, row in served.items():
        if row.options:
            try:
                backend.check_options(row.options)
            except FtmError as err:
                raise InvalidInput(f'the served-models table ({user_path()} over {SHIPPED.name}) has '
                                   f'[models."{name}"] options that the local backend refuses: {err.what}',
                                   f"Fix that row. {err.next_step}".strip()) from None


def table() -> dict[str, Served]:
    """Every served name, the user's entries over the shipped ones (the last good table while
    the file is broken: the log says what is wrong)."""
    try:
        served = check()
    except InvalidInput as err:
        log.warning("%s; answering with the last good served-models table", err.line())
        return dict(_last_good)
    _last_good.clear()
    _last_good.update(served)
    return served


def _rows(path: Path) -> dict[str, dict]:
    """The checked [models] rows of one file."""
    data = tables.read(path, lambda path, err: _bad(path, f"is not valid TOML ({err})"), unreadable=_bad)
    unknown = sorted(set(data) - {"models"})
    if unknown:
        raise _bad(path, f"has an unknown table or key '{unknown[0]}' (only [models.\"NAME\"] rows)")
    models = data.get("models", {})
    if not isinstance(models, dict):
        raise _bad(path, "has 'models' that is not a table")
    for name, row in models.items():
        _check_row(path, name, row)
    return models


def _check_row(path: Path, name: str, row) -> None:
    where = f'[models."{name}"]'
    if not isinstance(row, dict):
        raise _bad(path, f"has {where} that is not a table")
    unknown = sorted(set(row) - set(ROW_KEYS))
    if unknown:
        raise _bad(path, f"has an unknown option '{unknown[0]}' in {where} (known: {', '.join(ROW_KEYS)})")
    if not isinstance(row.get("local"), str) or not row["local"].strip():
        raise _bad(path, f"has {where} without local = \"<hub id or folder>\" as a string")
    if not isinstance(row.get("options", {}), dict):
        raise _bad(path, f"has {where} whose options is not a table")


def _bad(path: Path, what: str) -> InvalidInput:
    return InvalidInput(f"the served-models table {path} {what}",
                        f"Fix that file (the shipped table, {SHIPPED}, shows the layout).")


def lookup(name: str, status: int = 400) -> Served:
    """The entry for a base-model name, or an error that says which file to edit."""
    served = table().get(name)
    if served is None:
        raise unmapped(name, status)
    return served


def unmapped(name: str, status: int = 400) -> ApiError:
    """OpenAI's error shape, naming the table a user edits to serve this name (not its path)."""
    code = "model_not_found" if status == 404 else "model_not_available"
    return ApiError(status, f"Model {name} is not mapped to a local model. Add it to {WHERE} "
                    f'as [models."{name}"] local = "<hub id or path>".', param="model", code=code)
