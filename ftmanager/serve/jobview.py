"""A ledger run seen as OpenAI's job pieces: events, checkpoints and the results file.

Ids are derived from the ledger rows (the same id on every read, so `after` paging holds),
local model ids are shown as the job's ft: names, and metrics carry OpenAI's names.
"""

from __future__ import annotations

import hashlib
import re

from ..front.state import Job
from ..facts import epoch

_STEP = re.compile(r"^Step (\d+)/(\d+):")
RESULT_COLUMNS = ("step", "train_loss", "train_accuracy", "valid_loss", "valid_mean_token_accuracy")


def stable_id(prefix: str, *parts) -> str:
    """The same API id for the same ledger row on every read."""
    return prefix + hashlib.sha1(":".join(map(str, parts)).encode()).hexdigest()[:24]


def own_events(job: Job) -> list[dict]:
    """The events the API itself made before the run existed (rebuilt alike after a restart)."""
    messages = [f"Created fine-tuning job: {job.id}", f"Validating training file: {job.training_file}"]
    if job.validation_file:
        messages.append(f"Validating validation file: {job.validation_file}")
    return [{"object": "fine_tuning.job.event", "id": stable_id("ftevent-", job.id, i),
             "created_at": int(job.created_at), "level": "info", "message": m, "data": {}, "type": "message"}
            for i, m in enumerate(messages)]


def event(e: dict, shown: dict, ft: str) -> dict:
    """A ledger event as an API event: local model ids as ft: names, step messages as metrics."""
    run_id = shown["id"]
    message = e["message"].replace(f"local:{run_id}:step-", f"{ft}:ckpt-step-").replace(f"local:{run_id}", ft)
    out = {"object": "fine_tuning.job.event", "id": stable_id("ftevent-", run_id, e["id"]),
           "created_at": int(epoch(e["created_at"]) or 0), "level": e["level"] or "info",
           "message": message, "data": {}, "type": "message"}
    metrics = step_metrics(message, shown)
    if metrics:
        out.update(type="metrics", data=metrics)
    return out


def step_metrics(message: str, shown: dict) -> dict | None:
    """The metrics event data for a "Step N/M: ..." message, from the run's metrics rows."""
    match = _STEP.match(message)
    if not match:
        return None
    step, total = int(match[1]), int(match[2])
    row = next((m for m in shown["metrics"] if m["step"] == step), None)
    if row is None:
        return None
    return {**openai_metrics(row), "step": step, "total_steps": total}


def openai_metrics(row: dict) -> dict:
    """A metrics row in OpenAI's names (train_accuracy is train_mean_token_accuracy there)."""
    data = {k: v for k, v in row.items() if k != "run_id" and v is not None}
    if "train_accuracy" in data:
        data["train_mean_token_accuracy"] = data.pop("train_accuracy")
    return data


def checkpoint(c: dict, job_id: str, name: str) -> dict:
    metrics = openai_metrics({k: v for k, v in (c["metrics"] or {}).items() if k != "step"})
    return {"object": "fine_tuning.job.checkpoint", "id": stable_id("ftckpt_", job_id, c["step"]),
            "created_at": int(epoch(c["created_at"]) or 0), "fine_tuned_model_checkpoint": name,
            "fine_tuning_job_id": job_id, "metrics": {"step": c["step"], **metrics}, "step_number": c["step"]}


def results_csv(metrics: list[dict]) -> str:
    """OpenAI's step_metrics.csv: step, train_loss, train_accuracy, valid_loss, valid accuracy."""
    rows = [",".join(RESULT_COLUMNS)]
    for m in metrics:
        rows.append(",".join("" if m.get(c) is None else str(m[c]) for c in RESULT_COLUMNS))
    return "\n".join(rows) + "\n"
