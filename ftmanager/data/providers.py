"""Data rules beyond the common checks, each declared by its backend as `data_rules` (a backend.Rules):
what `ftm datasets validate --provider NAME` reports, and what `ftm submit` refuses before a byte
is uploaded. Per example (roles, turn order, what a message may hold), per file (minimum
examples, size). The rules are found through the registry, so a third party's backend brings
its own.
"""

from __future__ import annotations

from ..backend import Rules
from ..errors import InvalidInput, NotFound
from .export import CannotHold  # what a Rules' holds() raises

__all__ = ["CannotHold", "Rules", "file_problems", "problem", "provider_model", "rules"]


def _declared(provider: str) -> Rules | None:
    from .. import registry

    try:
        return registry.load(provider).data_rules
    except NotFound:
        return None


def rules(provider: str) -> Rules:
    """The rules the backend called provider declares, or one line naming those that declare some."""
    from .. import registry

    found = _declared(provider)
    if found is None:
        known = [name for name in registry.names() if _declared(name) is not None]
        raise InvalidInput(f"ftm knows no data rules for {provider!r}", f"Choose one of: {', '.join(known)}.")
    return found


def provider_model(provider: str) -> str | None:
    """The model a provider's data is checked for when none is named: its first in the base-model table."""
    from ..basemodels import table

    return next((row.ids[provider][0] for row in table().values() if provider in row.ids), None)


def problem(example: dict, provider: str) -> str | None:
    """Why provider would refuse this (otherwise valid) example, or None."""
    try:
        rules(provider).holds(example)
    except CannotHold as why:
        return f"{provider}: {why}"
    return None


def file_problems(provider: str, n_examples: int, size: int, model_minimum: int | None = None) -> list[tuple[str, str]]:
    """(code, message) for what provider refuses in the file as a whole (its minimum only where
    the model's own, reported beside it, is lower)."""
    r = rules(provider)
    out = []
    if n_examples < r.min_examples and (model_minimum or 0) < r.min_examples:
        out.append(("too_few_examples", f"{n_examples} example(s); {provider} needs at least {r.min_examples}"))
    if r.max_bytes is not None and size > r.max_bytes:
        out.append(("file_too_large", f"{size:,} bytes; {provider} takes files up to {r.max_bytes:,}"))
    return out
