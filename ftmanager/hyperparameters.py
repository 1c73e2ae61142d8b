"""The hyperparameters of a run, typed: what was asked (each a number or "auto"), checked once
against facts.RANGES when the record is made, kept as JSON in the ledger and in a local run's
spec.json, and resolved in one place (resolved()) with each backend's own defaults for "auto".

The training method rides along: "supervised" now; a method with settings of its own (DPO's
beta) adds its name and settings to METHODS. Backend-specific options (-p key=value) are not
here: they stay each backend's declared Options.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .errors import InvalidInput
from .facts import HYPERPARAMETERS, RANGES, out_of_range

AUTO = "auto"
SUPERVISED = "supervised"
# Each training method and the settings it takes beyond the common three.
DPO = "dpo"
METHODS: dict[str, tuple[str, ...]] = {SUPERVISED: (), DPO: ("beta",)}


def checked(name: str, value) -> int | float | str:
    """A value of a common hyperparameter checked against its range: a number, or "auto"."""
    if value is None or value == AUTO:
        return AUTO
    kind = RANGES[name][0]
    try:
        number = kind(value)
    except (TypeError, ValueError, OverflowError):
        shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:37] + "..."
        raise InvalidInput(f"{name} must be a number or 'auto', not {shown}", "") from None
    problem = out_of_range(name, number)
    if problem:
        raise InvalidInput(problem, "")
    return number


@dataclass(frozen=True)
class Hyperparameters:
    """n_epochs, batch_size, learning_rate_multiplier (each a number or "auto"), and the method."""

    n_epochs: int | str = AUTO
    batch_size: int | str = AUTO
    learning_rate_multiplier: float | str = AUTO
    method: str = SUPERVISED
    settings: dict = field(default_factory=dict)  # the method's own (METHODS), by name

    def __post_init__(self):
        for name in HYPERPARAMETERS:
            object.__setattr__(self, name, checked(name, getattr(self, name)))
        if self.method not in METHODS:
            raise InvalidInput(f"unknown training method {self.method!r}", f"Use one of {', '.join(METHODS)}.")
        unknown = sorted(set(self.settings) - set(METHODS[self.method]))
        if unknown:
            hint = "Add --method dpo." if self.method == SUPERVISED and set(unknown) <= set(METHODS[DPO]) else ""
            raise InvalidInput(f"the {self.method} method takes no {', '.join(unknown)}", hint)
        object.__setattr__(self, "settings", {k: checked(k, v) for k, v in self.settings.items()})

    @classmethod
    def of(cls, given: Hyperparameters | dict | None) -> Hyperparameters:
        """A record from itself, or from the ledger's / spec.json's dict (missing keys are "auto")."""
        if isinstance(given, cls):
            return given
        given = dict(given or {})
        method = given.pop("method", None) or SUPERVISED
        common = {name: given.pop(name, None) for name in HYPERPARAMETERS}
        return cls(**common, method=method, settings=given)

    def to_dict(self) -> dict:
        """The record as the ledger and spec.json keep it (the method only when not supervised)."""
        out = {name: getattr(self, name) for name in HYPERPARAMETERS}
        if self.method != SUPERVISED:
            out.update(method=self.method, **self.settings)
        return out

    def asked(self, name: str) -> bool:
        """Whether name was given as a number rather than left "auto"."""
        return getattr(self, name) != AUTO

    def learning_rate(self, base: float) -> float:
        """A backend's base rate scaled by learning_rate_multiplier ("auto" scales by 1)."""
        return base * (1.0 if self.learning_rate_multiplier == AUTO else self.learning_rate_multiplier)

    def resolved(self, **defaults) -> dict:
        """to_dict() with each "auto" replaced by the backend's default for it (given by name;
        one not given stays "auto", the provider's to choose)."""
        out = self.to_dict()
        for name, default in defaults.items():
            if out[name] == AUTO:
                out[name] = default
        return out
