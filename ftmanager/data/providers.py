"""Each hosted provider's data rules beyond the common checks: what `ftm datasets validate
--provider NAME` reports, and what `ftm submit` refuses before a byte is uploaded.

Per example (roles, turn order, what a message may hold), per file (minimum examples, size).
Together's example rules are its export's (export.to_together, checked against Together's own
file check in tests/peers/): one place for them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..errors import InvalidInput
from .export import CannotHold, to_together

FIREWORKS_ROLES = ("system", "user", "assistant", "tool")


@dataclass(frozen=True)
class Rules:
    """A provider's data rules: holds(example) raises CannotHold saying why it would be refused."""

    name: str
    min_examples: int
    max_bytes: int | None
    holds: Callable[[dict], object]


def _fireworks(example: dict) -> None:
    """Fireworks' chat format: OpenAI's roles (tools included), a reply from the assistant."""
    messages = example["messages"]
    for i, m in enumerate(messages, 1):
        if m.get("role") not in FIREWORKS_ROLES:
            raise CannotHold(f"message {i} has role {m.get('role')!r}, which fireworks does not take")
    if not any(m.get("role") == "assistant" for m in messages):
        raise CannotHold("it has no assistant message for fireworks to train on")


RULES = {
    # Together: at least one example (its SDK's MIN_SAMPLES), files up to 50.1 GB (MAX_FILE_SIZE_GB)
    "together": Rules("together", 1, int(50.1 * (1 << 30)), to_together),
    # Fireworks: at least 3 examples (it refuses smaller datasets)
    "fireworks": Rules("fireworks", 3, None, _fireworks),
}


def rules(provider: str) -> Rules:
    """The rules of provider, or one line naming the providers ftm knows the rules of."""
    if provider not in RULES:
        raise InvalidInput(f"ftm knows no data rules for {provider!r}", f"Choose one of: {', '.join(RULES)}.")
    return RULES[provider]


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
