"""`ftm compare`: runs side by side, one row per field, and their loss curves on one plot."""

from __future__ import annotations

from pathlib import Path

from .errors import InvalidInput
from .evaluation import SCORES
from .facts import epoch
from .hyperparameters import DPO, METHODS
from .ledger import ledger

# Where a run says how it trained (qlora, lora, full): local's training_type, or "method" (local's
# old name for it, and Together's) where that is not a training method (supervised, dpo).
TRAINING_TYPE_KEYS = ("training_type", "method")


def _seconds(run: dict) -> float | None:
    start, end = epoch(run.get("started_at") or run.get("created_at")), epoch(run.get("finished_at"))
    return end - start if start and end else None


def _hyperparameters(run: dict) -> dict:
    """What the run trained with: resolved values where known, else what was asked."""
    asked = dict(run.get("hyperparameters") or {})
    if run.get("seed") is not None:  # a column of the run, whether or not the backend echoes it
        asked["seed"] = run["seed"]
    resolved = run.get("resolved_hyperparameters") or {}
    return {k: resolved.get(k, v) for k, v in asked.items()} | {
        k: v for k, v in resolved.items() if k not in asked
    }


def compare(refs: list[str]) -> dict:
    """Every run's settings, outcome, metrics summary and evaluation scores, field by field."""
    store = ledger()
    if len(refs) < 2:
        raise InvalidInput("compare needs at least two runs", "Give two or more run ids.")
    runs = [store.run(ref) for ref in refs]
    columns = []
    for run in runs:
        ds = store.dataset(run["dataset_id"]) if run["dataset_id"] else None  # an import's data may be missing
        column = {
            "id": run["id"], "backend": run["backend"], "method": method(run), "training_type": training_type(run),
            "base_model": run["base_model"],
            "dataset": f"{ds['name']} ({ds['id'][:12]})" if ds else "missing", "status": run["status"],
            "parent_run_id": run["parent_run_id"], "duration_s": _seconds(run),
            "trained_tokens": run["trained_tokens"], "estimated_cost": run["estimated_cost"],
            "actual_cost": run["actual_cost"], "result_model": run["result_model"],
        }
        column |= {f"hp.{k}": v for k, v in sorted(_hyperparameters(run).items())}
        column |= store.metric_summary(run["id"])
        column |= _scores(store, run["id"])
        columns.append(column)
    fields = list(dict.fromkeys(k for c in columns for k in c))
    differ = [f for f in fields if f.startswith("hp.") and len({repr(c.get(f)) for c in columns}) > 1]
    return {"runs": columns, "fields": fields, "differing_hyperparameters": differ}


def method(run: dict) -> str | None:
    """How the run trained, as the runs page names it: dpo for a DPO run, else its training type."""
    from .methods import method_of

    return DPO if method_of(run) == DPO else training_type(run)


def training_type(run: dict) -> str | None:
    """What the run trained (qlora, lora, full, ...), as its backend recorded it."""
    for source in (run.get("resolved_hyperparameters") or {}, run.get("options") or {}):
        for key in TRAINING_TYPE_KEYS:  # "method" is the old name, unless it names a training method
            if source.get(key) and source[key] not in METHODS:
                return str(source[key])
    if run["backend"] == "local":  # runs from before the method was recorded: QLoRA unless told not to quantize
        quantize = str((run.get("options") or {}).get("quantize", "true")).lower()
        return "lora" if quantize in ("false", "0", "no", "off") else "qlora"
    return None


def _scores(store, run_id: str) -> dict:
    """The latest evaluation's scores, and every grader's latest grade (mean, pass rate, errors)."""
    evals = store.evaluations(run_id=run_id)
    if not evals:
        return {}
    last = evals[-1]
    out = {f"eval.{k}": last[k] for k in SCORES} | {"eval.n": last["n_examples"]}
    out |= {"eval.perplexity": last["perplexity"], "eval.perplexity_source": last["perplexity_source"]}
    for evaluation in evals:  # later evaluations overwrite earlier grades of the same grader
        for grade in store.grade_summary(evaluation["id"]):
            out[f"grade.{grade['grader']}"] = grade["mean"]
            if grade["pass_rate"] is not None:
                out[f"grade.{grade['grader']}.pass_rate"] = grade["pass_rate"]
            if grade["errors"]:
                out[f"grade.{grade['grader']}.errors"] = grade["errors"]
    return out


def plot(refs: list[str], out: Path, by: str = "step", metric: str | None = None) -> Path:
    """Train (solid) and validation (dashed) loss of every run on one PNG, by step or by epoch;
    or one named metric (a DPO run's rewards/margins, ...) where metric is given."""
    store = ledger()
    curves = (("train_loss", "-"), ("valid_loss", "--")) if metric is None else ((metric, "-"),)
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise InvalidInput("plotting needs matplotlib", "Install it: pip install 'ftm[plot]'.") from None
    if by not in ("step", "epoch"):
        raise InvalidInput(f"--by must be step or epoch, not {by!r}", "")
    lines = _lines(store, refs, by, curves)
    if metric is not None and not lines:
        raise InvalidInput(f"none of these runs reports a metric called {metric!r}",
                           "See the names under `ftm show RUN` (a DPO run's rewards/margins, ...).")
    fig, ax = plt.subplots(figsize=(9, 5))
    for xs, ys, style, label in lines:
        ax.plot(xs, ys, style, label=label)
    ax.set_xlabel(by)
    ax.set_ylabel(metric or "loss")
    ax.set_title("ftm compare")
    ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def _lines(store, refs: list[str], by: str, curves) -> list[tuple]:
    """(xs, ys, style, label) of each run's curve of each metric it has points of."""
    lines = []
    for ref in refs:
        run = store.run(ref)
        scale = _epoch_scale(store, run) if by == "epoch" else 1.0
        for metric, style in curves:
            points = store.metric_curve(run["id"], metric)
            if points:
                lines.append(([s * scale for s, _ in points], [v for _, v in points], style,
                              f"{run['id']} {run['backend']} {metric}"))
    return lines


def _epoch_scale(store, run: dict) -> float:
    """Epochs per step: total steps over the epochs the run trained."""
    epochs = _hyperparameters(run).get("n_epochs")
    steps = run.get("total_steps") or store.metric_summary(run["id"])["last_step"]
    if not isinstance(epochs, (int, float)) or not steps:
        raise InvalidInput(f"run {run['id']} does not record its epochs and steps", "Compare --by step.")
    return epochs / steps
