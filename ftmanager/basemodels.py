"""The base-model table: one row per model family, the model's id on each provider and at home.

Shipped as ftmanager/data/base_models.toml; $FTM_HOME/base_models.toml is merged over it row by
row, field by field (both read through ftmanager.tables). Re-runs map a model through it (`model_on`), and a pulled adapter's base
is found through it (`local_for`). Light: tomllib only, read on every lookup (it is tiny).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from . import tables
from .errors import InvalidInput

SHIPPED = tables.shipped(tables.BASE_MODELS)
LOCAL = "local"


@dataclass(frozen=True)
class Row:
    """One model family: column (a backend's name) -> its names there, the first the one a re-run sends."""

    name: str
    ids: dict[str, tuple[str, ...]]
    instead: str | None = None  # a closed model's stand-in row elsewhere


def user_path() -> Path:
    """$FTM_HOME/base_models.toml (read when present, never created)."""
    return tables.user_file(tables.BASE_MODELS)


def _invalid(path: Path, err: Exception) -> InvalidInput:
    return InvalidInput(f"{path} is not valid TOML ({err})", "Fix the syntax in that file.")


def table() -> dict[str, Row]:
    """Every row, the user's fields over the shipped ones."""
    rows, user = tables.models(tables.BASE_MODELS, _invalid)
    for name, fields in user.items():
        rows.setdefault(name, {}).update(fields)
    return {name: _row(name, fields) for name, fields in rows.items()}


def _row(name: str, fields: dict) -> Row:
    ids = {}
    for column, value in fields.items():
        names = [value] if isinstance(value, str) else value
        if column != "instead" and isinstance(names, list) and names and all(isinstance(n, str) for n in names):
            ids[column] = tuple(names)
    instead = fields.get("instead")
    return Row(name, ids, instead if isinstance(instead, str) else None)


def columns() -> set[str]:
    """The backends the table speaks for."""
    return {column for row in table().values() for column in row.ids}


def row_of(model: str, column: str | None = None) -> Row | None:
    """The row naming model: in `column` first (the backend it ran on), then in any column."""
    rows = table()
    for wanted in ([column] if column else []) + [None]:
        for row in rows.values():
            if any(model in names for col, names in row.ids.items() if wanted in (None, col)):
                return row
    return None


def model_on(model: str, source: str, target: str) -> tuple[str, str] | None:
    """(target's model standing for source's `model`, how it was found), or None when the table
    has no column for target (a backend it does not speak for). Unmapped: one line naming the fix."""
    if target not in columns():
        return None
    row = row_of(model, source)
    if row is None:
        raise _unmapped(f"{model} ({source}) is in no row of the base-model table", target)
    if target in row.ids:
        return row.ids[target][0], f"the {row.name} row"
    other = table().get(row.instead) if row.instead else None
    if other is not None and target in other.ids:
        return other.ids[target][0], f"the {row.name} row: {target} trains {other.name} instead"
    raise _unmapped(f"the base-model table's {row.name} row has no {target} model", target)


def local_for(*names: str) -> str:
    """The local model standing for the first of names the table knows (a provider's id, or the
    name a downloaded adapter gives its base); one line naming the fix when none is mapped."""
    for name in names:
        row = row_of(name) if name else None
        if row is not None and LOCAL in row.ids:
            return row.ids[LOCAL][0]
    shown = next((n for n in names if n), "this model")
    raise _unmapped(f"the base-model table maps {shown} to no local model", LOCAL, shown)


def _unmapped(what: str, column: str, model: str | None = None) -> InvalidInput:
    """The one-line refusal for a model the table cannot map: it names the file to edit."""
    if model is None:
        fix = f'Pass --model, or add {column} = "..." to a row in {user_path()}'
    else:
        fix = f'Add a row naming it, with local = "<folder or hub id>", to {user_path()}'
    return InvalidInput(what, f"{fix} (the shipped table, {SHIPPED}, shows the layout).")
