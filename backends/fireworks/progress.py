"""What one poll of a Fireworks job reports: its state in OpenAI's words (Fireworks' kept in
an event per change), its progress, its resolved hyperparameters, tokens, cost and model."""

from __future__ import annotations

import time

from ftmanager.backend import Event, Progress
from ftmanager.facts import CANCELLED, FAILED, PAUSED, QUEUED, RUNNING, SUCCEEDED, VALIDATING, is_terminal
from ftmanager.hosted import price_per_1m, usd

BASE_LEARNING_RATE = 1e-4  # Fireworks' default rate: what learning_rate_multiplier scales
# JOB_STATE_* -> OpenAI's status (the provider's word is kept in the event); CANCELLING,
# UNSPECIFIED and states we do not know leave the status as it was
STATUSES = {
    "JOB_STATE_CREATING": VALIDATING, "JOB_STATE_VALIDATING": VALIDATING,
    "JOB_STATE_CREATING_INPUT_DATASET": VALIDATING, "JOB_STATE_PENDING": QUEUED,
    "JOB_STATE_RE_QUEUEING": QUEUED, "JOB_STATE_IDLE": QUEUED, "JOB_STATE_RUNNING": RUNNING,
    "JOB_STATE_WRITING_RESULTS": RUNNING, "JOB_STATE_PAUSED": PAUSED, "JOB_STATE_COMPLETED": SUCCEEDED,
    "JOB_STATE_EARLY_STOPPED": SUCCEEDED, "JOB_STATE_FAILED": FAILED, "JOB_STATE_EXPIRED": FAILED,
    "JOB_STATE_CANCELLED": CANCELLED, "JOB_STATE_DELETING": CANCELLED, "JOB_STATE_DELETING_CLEANING_UP": CANCELLED,
}

ERROR_STATES = ("JOB_STATE_FAILED", "JOB_STATE_EXPIRED")


def progress(job, cursor: dict) -> Progress:
    """The Progress of one GET of a job (a DPO job read by dpo.as_job), given the cursor of the last."""
    state = job.state or "JOB_STATE_UNSPECIFIED"
    status = STATUSES.get(state) or cursor.get("status") or QUEUED
    events = _state_events(job, state, cursor) + _epoch_events(job, cursor)
    if status == RUNNING and "running_since" not in cursor:
        cursor["running_since"] = time.time()
    cursor.update(state=state, status=status)
    done, tokens = is_terminal(status), _tokens(job)
    return Progress(
        status=status, cursor=cursor, events=events, hyperparameters=_resolved(job),
        result_model=job.output_model if status == SUCCEEDED else None,
        trained_tokens=tokens if done else None,
        actual_cost=usd(tokens, price_per_1m(job.base_model or "")) if done else None,
        error=_error(job, state) if status == FAILED else None,
        eta_seconds=None if done else _eta(job, cursor),
        finished_at=_when(job.completed_time or job.update_time) if done else None,
    )


def _when(moment) -> float | None:
    return moment.timestamp() if moment is not None else None


def _state_events(job, state: str, cursor: dict) -> list[Event]:
    if state == cursor.get("state"):
        return []
    n = cursor["changes"] = cursor.get("changes", 0) + 1
    said = job.status.message if job.status and job.status.message else ""
    return [Event(id=f"{job.name}:state-{n}", created_at=_when(job.update_time) or time.time(),
                  message=f"Fireworks job {state}" + (f": {said}" if said else ""),
                  level="error" if state in ERROR_STATES else "info", data={"state": state})]


def _epoch_events(job, cursor: dict) -> list[Event]:
    """An event when the job reports a later epoch (Fireworks counts epochs from 0)."""
    p = job.job_progress
    if p is None or p.epoch is None or p.epoch <= cursor.get("epoch", -1):
        return []
    cursor["epoch"] = p.epoch
    return [Event(id=f"{job.name}:epoch-{p.epoch}", created_at=_when(job.update_time) or time.time(),
                  message=f"Fireworks job at epoch {p.epoch + 1}, {p.percent or 0}% done",
                  data={"epoch": p.epoch, "percent": p.percent})]


def _resolved(job) -> dict | None:
    """The hyperparameters the job reports, in OpenAI's names (and the rate outright)."""
    if job.epochs is None:
        return None
    rate = job.learning_rate
    hp = {"n_epochs": job.epochs, "batch_size": job.batch_size_samples, "learning_rate": rate,
          "learning_rate_multiplier": rate / BASE_LEARNING_RATE if rate else None,
          "lora_r": job.lora_rank, "max_context_length": job.max_context_length,
          "beta": getattr(job, "beta", None)}  # a DPO job's (dpo.as_job)
    return {k: v for k, v in hp.items() if v is not None}


def _tokens(job) -> int | None:
    """Tokens the job trained on (all epochs), as its progress reports them."""
    p = job.job_progress
    return p.input_tokens if p is not None and p.input_tokens is not None else None


def _error(job, state: str) -> dict:
    status = job.status
    return {"code": (status.code if status and status.code not in (None, "OK") else state.lower()),
            "message": (status.message if status and status.message else f"the job ended {state}"), "param": None}


def _eta(job, cursor: dict) -> float | None:
    """Seconds left at the pace so far, from the percent done since the job began running."""
    p, since = job.job_progress, cursor.get("running_since")
    if p is None or not p.percent or since is None:
        return None
    return (time.time() - since) * (100 - p.percent) / p.percent
