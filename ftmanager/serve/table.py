"""The served-models table: base-model names a client asks for -> the local model behind each.

Shipped as ftmanager/data/served_models.toml; $FTM_HOME/served_models.toml overrides it
name by name. Read on every lookup (it is tiny), so an edit needs no restart.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .. import tables
from ..front.state import ApiError

SHIPPED = tables.shipped(tables.SERVED_MODELS)


@dataclass(frozen=True)
class Served:
    """One base-model name: the local model that trains and answers for it, and job options."""

    name: str
    local: str
    options: dict = field(default_factory=dict)


def user_path() -> Path:
    """$FTM_HOME/served_models.toml (read when present, never created)."""
    return tables.user_file(tables.SERVED_MODELS)


def _invalid(path: Path, err: Exception) -> ApiError:
    return ApiError(500, f"The served-models table {path} is not valid TOML: {err}. Fix that file.",
                    code="server_error", type="server_error")


def table() -> dict[str, Served]:
    """Every served name, the user's entries over the shipped ones."""
    entries, user = tables.models(tables.SERVED_MODELS, _invalid)
    entries.update(user)
    return {name: Served(name, str(e.get("local", "")), dict(e.get("options") or {}))
            for name, e in entries.items() if e.get("local")}


def lookup(name: str, status: int = 400) -> Served:
    """The entry for a base-model name, or an error that says which file to edit."""
    served = table().get(name)
    if served is None:
        raise unmapped(name, status)
    return served


def unmapped(name: str, status: int = 400) -> ApiError:
    """OpenAI's error shape, naming the table a user edits to serve this name."""
    code = "model_not_found" if status == 404 else "model_not_available"
    return ApiError(status, f"Model {name} is not mapped to a local model. Add it to {user_path()} "
                    f'as [models."{name}"] local = "<hub id or path>" (the shipped table, '
                    f"{SHIPPED}, shows the layout).", param="model", code=code)
