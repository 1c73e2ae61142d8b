"""Carry a run's settings to another backend, saying plainly what could not be carried."""

from __future__ import annotations

from dataclasses import dataclass, field

from .errors import FtmError
from .facts import HYPERPARAMETERS


@dataclass
class Mapped:
    hyperparameters: dict
    options: dict
    notes: list[str] = field(default_factory=list)  # what was carried, and how
    dropped: list[str] = field(default_factory=list)  # what could not be carried

    def summary(self) -> str:
        parts = []
        if self.notes:
            parts.append("mapped: " + "; ".join(self.notes))
        if self.dropped:
            parts.append("not mapped: " + "; ".join(self.dropped))
        return ". ".join(parts) or "nothing to map"


def _number(value):
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def map_settings(parent: dict, source, target, hp_overrides: dict, option_overrides: dict) -> Mapped:
    """The hyperparameters and options for re-running parent (trained on source) on target.

    Numbers the parent actually trained with (resolved) win over "auto", so the re-run trains
    the way the parent did; overrides win over both.
    """
    asked = parent.get("hyperparameters") or {}
    resolved = parent.get("resolved_hyperparameters") or {}
    out = Mapped(hyperparameters={}, options={})
    for key in HYPERPARAMETERS:
        value = asked.get(key, "auto")
        if value == "auto" and _number(resolved.get(key)) is not None:
            value = resolved[key]
            out.notes.append(f"{key}={value} (resolved by {source.name} from auto)")
        out.hyperparameters[key] = value
    _map_method({"method": parent.get("method"), **asked}, resolved, out)
    _map_options(parent.get("options") or {}, source, target, out)
    out.hyperparameters.update({k: v for k, v in hp_overrides.items() if v is not None})
    out.options.update(option_overrides)
    return out


# A method setting under a provider's own name (an imported Together job says dpo_beta).
SETTING_NAMES = {"dpo_beta": "beta"}


def _map_method(asked: dict, resolved: dict, out: Mapped) -> None:
    """The parent's training method and its own settings (beta), by name, resolved where asked "auto"."""
    from .hyperparameters import METHODS, SUPERVISED

    method = asked.get("method") or SUPERVISED  # an imported run's own column says it too
    if method == SUPERVISED or method not in METHODS:
        return
    out.hyperparameters["method"] = method
    named = {SETTING_NAMES.get(k, k): v for k, v in asked.items()}
    done = {SETTING_NAMES.get(k, k): v for k, v in resolved.items()}
    for name in METHODS[method]:
        value = named.get(name, "auto")
        if value == "auto" and _number(done.get(name)) is not None:
            value = done[name]
            out.notes.append(f"{name}={value} (resolved from auto)")
        out.hyperparameters[name] = value
    out.notes.append(f"method={method}")


def map_model(parent: dict, target, out: Mapped) -> str:
    """The base model a re-run on target trains: the parent's on its own backend, else the
    base-model table's model for it on target (one line when it has none), else target's default
    for a backend the table does not speak for."""
    from . import basemodels

    if target.name == parent["backend"]:
        model, how = parent["base_model"], "the parent's"
    else:
        found = basemodels.model_on(parent["base_model"], parent["backend"], target.name)
        model, how = found or (target.default_model, f"{target.name}'s default")
    out.notes.append(f"model={model} ({how})")
    return model


# Values a target takes in place of one it cannot: a QLoRA run is a LoRA run on a 4-bit base.
NEAREST = {("training_type", "qlora"): "lora", ("method", "qlora"): "lora"}
# One setting under two backends' names (Fireworks says max_context_length for max_length), or
# under an old name: local and Together both said method for what is now training_type, so old
# runs' options carry method=qlora|lora|full.
SYNONYMS = {"max_length": "max_context_length", "max_context_length": "max_length", "method": "training_type"}


def _takes(target, key: str, value) -> bool:
    try:
        target().check_options({key: value})  # an instance: backends check values in their own way
    except FtmError:
        return False
    return True


def _map_options(options: dict, source, target, out: Mapped) -> None:
    for key, value in options.items():
        name = key if key in target.options else SYNONYMS.get(key)
        if name in target.options:
            _carry(key, name, value, target, out)
        elif key == "learning_rate" and source.base_learning_rate:
            multiplier = float(value) / source.base_learning_rate
            out.hyperparameters["learning_rate_multiplier"] = multiplier
            out.notes.append(f"learning_rate={value} -> learning_rate_multiplier={multiplier:g} "
                             f"({source.name}'s base rate is {source.base_learning_rate:g})")
        else:
            out.dropped.append(f"{key}={value} ({target.name} has no such option)")


def _carry(key: str, name: str, value, target, out: Mapped) -> None:
    """Carry option key to target's option name: its nearest value where target refuses this one."""
    nearest = NEAREST.get((key, value))
    if nearest and not _takes(target, name, value):
        out.notes.append(f"{key}={value} -> {nearest} ({target.name} has no {value})")
        value = nearest
    elif name != key:
        out.notes.append(f"{key}={value} -> {name} ({target.name}'s name for it)")
    out.options[name] = value
