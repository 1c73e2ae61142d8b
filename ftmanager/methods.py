"""Training methods: which backends run which method and the kind of data each method needs,
checked at submit (each check refuses in one line before anything is uploaded or recorded), and
how a run's method is named (chains.py keeps the runs trained on top of another run's model)."""

from __future__ import annotations

from . import registry
from .backend import Backend
from .errors import NotFound, Unsupported
from .ledger import ledger


def check_method(impl: Backend, method: str, model: str) -> None:
    """The backend's refusal of a method it cannot run, naming the backends that can."""
    try:
        impl.check_method(method, model)
    except Unsupported as err:
        able = [name for name in registry.names() if method in _methods_of(name)]
        raise Unsupported(err.what, f"Use a backend that has it: {', '.join(able) or 'none yet'}.") from None


def _methods_of(name: str) -> tuple[str, ...]:
    try:
        return registry.load(name).methods
    except Exception:  # noqa: BLE001  (a plugin that does not load runs nothing)
        return ()


def require_kind(method: str, train: dict, valid: dict | None) -> None:
    """Refuse, before anything is uploaded or recorded, data of the wrong kind for the method:
    preference pairs for DPO, chat examples otherwise (the validation set too)."""
    from .data import require_kind as refuse_other_kind

    wanted, purpose = ("preference", "a DPO run") if method == "dpo" else ("chat", f"a {method} run")
    refuse_other_kind(train, wanted, purpose)
    if valid:
        refuse_other_kind(valid, wanted, f"{purpose}'s validation set")


METHOD_LABELS = {"supervised": "SFT", "dpo": "DPO"}


def method_of(run: dict) -> str:
    """The run's training method as ftm names it (supervised when none is said)."""
    return (run.get("hyperparameters") or {}).get("method") or run.get("method") or "supervised"


def label(run_id: str | None) -> str | None:
    """'run-x (SFT)': the upstream run as `ftm show` and lineage name it."""
    if not run_id:
        return None
    try:
        run = ledger().run(run_id)
    except NotFound:
        return f"{run_id} (deleted)"
    method = method_of(run)
    return f"{run_id} ({METHOD_LABELS.get(method, method)})"
