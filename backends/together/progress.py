"""What one poll of a Together job reports, in ftm's words: OpenAI's statuses (Together's own
word kept in an event), events, step metrics under OpenAI's names, checkpoints, the result.

Pure functions over the SDK's objects (as dicts), so the backend's poll() reads top to bottom.
"""

from __future__ import annotations

import hashlib
from datetime import datetime

from ftmanager.backend import Checkpoint, Event
from ftmanager.facts import CANCELLED, FAILED, QUEUED, RUNNING, SUCCEEDED, VALIDATING

# Together's statuses -> OpenAI's. cancel_requested is not an end: the run keeps what it was.
STATUSES = {"pending": VALIDATING, "queued": QUEUED, "running": RUNNING, "compressing": RUNNING,
            "uploading": RUNNING, "completed": SUCCEEDED, "error": FAILED, "user_error": FAILED,
            "cancelled": CANCELLED}
# Together's metric names -> the ledger's (OpenAI's)
METRICS = {"train/loss": "train_loss", "eval/loss": "valid_loss", "train/accuracy": "train_accuracy",
           "eval/accuracy": "valid_mean_token_accuracy"}
ERROR_EVENTS = ("job_error", "job_user_error")


def when(text) -> float | None:
    """Together's ISO 8601 time (or epoch seconds) as epoch seconds."""
    if text in (None, ""):
        return None
    if isinstance(text, (int, float)):
        return float(text)
    return datetime.fromisoformat(str(text)).timestamp()  # Python 3.11 reads the trailing Z


def status(word: str, cursor: dict) -> str:
    """OpenAI's status for Together's word (an unknown word is kept as it is)."""
    if word == "cancel_requested":
        return cursor.get("status") or QUEUED
    return STATUSES.get(word, word)


def status_event(job_id: str, word: str, cursor: dict, at: float) -> list[Event]:
    """An event of ours when Together's own status word changes (it says more than OpenAI's)."""
    if word == cursor.get("together_status"):
        return []
    cursor["together_status"] = word
    return [Event(id=f"together-status-{job_id}-{word}", created_at=at, message=f"together: {word}",
                  data={"together_status": word})]


def new_events(raw: list[dict], cursor: dict) -> list[Event]:
    """The events not reported yet (Together lists every event, oldest first, with no id: the
    cursor keeps how many were seen)."""
    seen = cursor.get("events_seen", 0)
    if seen > len(raw):  # the provider's list got shorter: start again (duplicates are ignored)
        seen = 0
    cursor["events_seen"] = len(raw)
    return [_event(e, seen + i) for i, e in enumerate(raw[seen:])]


def _event(e: dict, index: int) -> Event:
    key = e.get("hash") or hashlib.sha256(f"{index}{e.get('created_at')}{e.get('message')}".encode()).hexdigest()[:16]
    level = str(e.get("level") or "info").lower().removeprefix("legacy_i").removeprefix("legacy_")
    data = {k: e[k] for k in ("type", "step", "total_steps", "checkpoint_path", "model_path") if e.get(k)}
    return Event(id=f"together-{key}", created_at=when(e.get("created_at")) or 0.0, message=e.get("message") or "",
                 level=level if level in ("info", "warning", "error") else "info", data=data or None)


def metrics(rows: list[dict], cursor: dict) -> list[dict]:
    """Step metrics under the ledger's names; the cursor remembers the last step read."""
    out = []
    for row in rows:
        step = row.get("train/global_step", row.get("step"))
        if step is None:
            continue
        values = {METRICS[k]: v for k, v in row.items() if k in METRICS and v is not None}
        out.append({"step": int(step), **values})
    if out:
        cursor["metric_step"] = max(cursor.get("metric_step", 0), max(m["step"] for m in out))
    return out


def checkpoints(rows: list[dict], job_id: str, cursor: dict) -> list[Checkpoint]:
    """Checkpoints not yet reported; each named as Together's from_checkpoint takes it (ID:STEP)."""
    known = set(cursor.get("checkpoint_steps", ()))
    new = sorted((r for r in rows if r.get("step") is not None and r["step"] not in known), key=lambda r: r["step"])
    cursor["checkpoint_steps"] = sorted(known | {r["step"] for r in new})
    return [Checkpoint(step=int(r["step"]), model_id=f"{job_id}:{r['step']}", created_at=when(r.get("created_at")),
                       metrics={"together_path": r.get("path"), "checkpoint_type": r.get("checkpoint_type")})
            for r in new]


def error(events: list[dict]) -> dict:
    """The job's error, from its last error event."""
    said = [e.get("message") for e in events if e.get("type") in ERROR_EVENTS or e.get("level") == "error"]
    return {"code": "together_error", "message": said[-1] if said else "Together reported an error", "param": None}


def hyperparameters(job: dict, base_rate: float) -> dict:
    """The job's settings as Together resolved them, in ftm's names."""
    kind = job.get("training_type") or {}
    rate = job.get("learning_rate")
    out = {"n_epochs": job.get("n_epochs"), "batch_size": job.get("batch_size"), "learning_rate": rate,
           "learning_rate_multiplier": rate / base_rate if isinstance(rate, (int, float)) else None,
           "training_type": "full" if kind.get("type") == "Full" else "lora" if kind else None,
           "lora_r": kind.get("lora_r"), "lora_alpha": kind.get("lora_alpha"), "lora_dropout": kind.get("lora_dropout"),
           "target_modules": kind.get("lora_trainable_modules"), "warmup_ratio": job.get("warmup_ratio"),
           "beta": (job.get("training_method") or {}).get("dpo_beta")}  # DPO's, under ftm's name
    return {k: v for k, v in out.items() if v is not None}
