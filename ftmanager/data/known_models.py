"""What ftm knows about base models (models.toml beside this file, merged with the user's, read
through ftmanager.tables) and OpenAI's billing rules (its epoch rule is ftmanager.facts')."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from .. import tables
from ..errors import InvalidInput
from ..facts import RANGES, auto_epochs, out_of_range

SHIPPED = tables.shipped(tables.MODELS)
FALLBACK_ENCODING = "cl100k_base"

@dataclass(frozen=True)
class ModelInfo:
    name: str  # as asked
    entry: str | None  # the models.toml table it matched; None for an unknown model
    context_limit: int | None
    encoding: str | None  # tiktoken encoding; None when the model has its own tokenizer
    price_per_1m_train: float | None  # USD per 1M billed training tokens; None when unknown
    min_examples: int | None = None  # fewer examples in a file than this: refused

    @property
    def known(self) -> bool:
        return self.entry is not None


def user_table_path() -> Path:
    """$FTM_HOME/models.toml (not created: only read when the user made it)."""
    return tables.user_file(tables.MODELS)


def _invalid(path: Path, err: Exception) -> InvalidInput:
    return InvalidInput(f"{path}: {err}", "Fix the TOML syntax in that file.")


@lru_cache(maxsize=8)
def _table(user_path: str, user_mtime: float) -> dict:
    """Shipped table with the user's merged over it, field by field (cached per user file)."""
    table = tables.read(SHIPPED, _invalid)
    if user_mtime >= 0:
        user = tables.read(Path(user_path), _invalid)
        table["default_model"] = user.get("default_model", table["default_model"])
        for name, fields in user.get("models", {}).items():
            table["models"].setdefault(name, {}).update(fields)
    return table


def table() -> dict:
    """The merged model table: {"default_model": str, "models": {name: {...}}}."""
    path = user_table_path()
    mtime = path.stat().st_mtime if path.is_file() else -1.0
    return _table(str(path), mtime)


def default_model() -> str:
    return table()["default_model"]


def _match(name: str, models: dict) -> str | None:
    bare = name[3:] if name.startswith("ft:") else name
    if bare in models:
        return bare
    for entry, fields in models.items():
        if bare in fields.get("aliases", ()):
            return entry
    prefixes = [entry for entry in models if bare.startswith(entry)]
    return max(prefixes, key=len) if prefixes else None


def _tiktoken_guess(name: str) -> str | None:
    """tiktoken's own model -> encoding map, for models our table does not list."""
    import tiktoken.model  # a light module: no encodings are loaded

    try:
        return tiktoken.model.encoding_name_for_model(name.removeprefix("ft:").split(":")[0])
    except KeyError:
        return None


def model_info(model: str | None = None) -> ModelInfo:
    """Context limit, encoding and price of a model (the default model when None)."""
    name = model or default_model()
    models = table()["models"]
    entry = _match(name, models)
    if entry is None:
        return ModelInfo(name, None, None, _tiktoken_guess(name), None)
    fields = models[entry]
    price = fields.get("train_usd_per_1m")
    return ModelInfo(
        name=name,
        entry=entry,
        context_limit=fields.get("context_limit"),
        encoding=fields.get("encoding"),
        price_per_1m_train=None if price is None else float(price),
        min_examples=fields.get("min_examples"),
    )


def checked_model(name: str | None) -> str | None:
    """A model named on the command line, refused when ftm cannot tell what its rules are.

    Known: models.toml's models and aliases, names tiktoken knows (OpenAI's), a local model
    directory, and hub-style ids (org/name) that a local run can load.
    """
    if name is None or _match(name, table()["models"]) or _tiktoken_guess(name):
        return name
    if "/" in name.strip("/") or Path(name).expanduser().exists():
        return name
    known = ", ".join(sorted(table()["models"]))
    raise InvalidInput(
        f"unknown model {name!r}",
        f"Use one of {known}, a local model directory or a hub id (org/name), or add it to {user_table_path()}.",
    )


def resolve_epochs(n_epochs, n_examples: int) -> int:
    """An explicit epoch count, or OpenAI's auto rule for "auto"/None."""
    if n_epochs in (None, "auto"):
        return auto_epochs(n_examples)
    try:
        value = int(n_epochs)
    except (TypeError, ValueError):
        value = 0
    if out_of_range("n_epochs", value) or str(value) != str(n_epochs).strip():
        _kind, low, high, _exclusive = RANGES["n_epochs"]
        raise InvalidInput(f"n_epochs must be {low}-{high} or auto, not {n_epochs!r}", "Pass a whole number of epochs or auto.")
    return value
