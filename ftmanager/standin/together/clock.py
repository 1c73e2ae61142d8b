"""Together's fine-tuning jobs on a clock: its statuses, events, metrics and checkpoints.

Nothing trains. As in the OpenAI stand-in (standin.clock), a job is played forward lazily whenever
it is read, phase by phase, each event stamped with the moment it would have happened, so a job
ends at a precise instant (terminal_at) however often it is polled. Statuses are Together's:
pending -> queued -> running -> compressing -> uploading -> completed (or error, or
cancel_requested -> cancelled).
"""

from __future__ import annotations

import hashlib
import math
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from ...front.openai.file_checks import check_file
from ..clock import play
from ...front.service import Service
from ...front.state import ApiError

# Seconds each phase takes at speed 1 (a step is one optimizer step); --speed divides them.
PHASES = {"pending": 1.0, "queued": 2.0, "step": 0.5, "compressing": 0.5, "uploading": 0.5,
          "cancel_requested": 0.5}
TERMINAL = ("completed", "error", "user_error", "cancelled")
OWNER = "ftm-standin"  # the account part of the model names this stand-in makes


def stamp(at: float) -> str:
    """A time as Together writes it: ISO 8601 with milliseconds, UTC."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(at)) + f".{int(at * 1000) % 1000:03d}Z"


@dataclass
class FineTune:
    """One job: what was asked (`request`, resolved) and where the clock has played it to."""

    id: str
    request: dict
    training_path: Path
    validation_path: Path | None
    created_at: float
    output_name: str
    user_id: str
    status: str = "pending"
    events: list = field(default_factory=list)
    checkpoints: list = field(default_factory=list)
    metrics: list = field(default_factory=list)
    n_examples: int = 0
    token_count: int | None = None
    total_steps: int = 0
    step: int = 0
    epochs_completed: int = 0
    started_at: float | None = None
    updated_at: float = 0.0
    remaining: float = 0.0  # virtual seconds left in the current phase
    last: float = 0.0  # real time the clock was played up to
    terminal_at: float | None = None
    asked: dict = field(default_factory=dict)  # the create body as sent (tests check what a client sent)

    def emit(self, type_: str, message: str, at: float, level: str = "info", **extra) -> None:
        """Append an event in Together's shape (every field the spec requires)."""
        digest = hashlib.sha256(f"{self.id}{len(self.events)}{type_}{message}".encode()).hexdigest()[:16]
        event = {"object": "fine-tune-event", "created_at": stamp(at), "level": level, "message": message,
                 "type": type_, "param_count": 0, "token_count": self.token_count or 0,
                 "total_steps": self.total_steps, "wandb_url": "", "step": self.step,
                 "checkpoint_path": "", "model_path": "", "training_offset": 0, "hash": digest}
        self.events.append({**event, **extra})
        self.updated_at = at


class TogetherClock(Service):
    """Runs Together jobs on a clock `speed` times faster than PHASES; answers no chat."""

    def __init__(self, speed: float = 1.0, phases: dict | None = None):
        self.speed = speed
        self.phases = {**PHASES, **(phases or {})}

    def new_job(self, request: dict, training: Path, validation: Path | None) -> FineTune:
        now = time.time()
        job_id = f"ft-{uuid.uuid4()}"
        name = request["model"].split("/")[-1] + (f"-{request['suffix']}" if request.get("suffix") else "")
        job = FineTune(job_id, request, training, validation, now, f"{OWNER}/{name}-{job_id[3:11]}",
                       "user_ftmstandin", remaining=self.phases["pending"], last=now)
        job.emit("job_pending", "Fine tune request created", now)
        return job

    def start(self, job) -> None:
        """Nothing to do: the clock starts when the job is made."""

    def terminal_at(self, job_id: str) -> float | None:
        job = self.state.jobs.get(job_id)
        return job.terminal_at if job else None

    def refresh(self, job: FineTune) -> None:
        play(job, self.speed, lambda: job.status not in TERMINAL, lambda at: self._boundary(job, at))

    def _boundary(self, job: FineTune, at: float) -> None:
        """The current phase (or step) ended at `at`: move the job on."""
        move = {"pending": self._validated, "queued": self._started, "running": self._stepped,
                "compressing": self._compressed, "uploading": self._uploaded,
                "cancel_requested": self._cancelled}[job.status]
        move(job, at)

    def _phase(self, job: FineTune, status: str, at: float) -> None:
        job.status, job.remaining, job.updated_at = status, self.phases.get(status, self.phases["step"]), at

    def _validated(self, job: FineTune, at: float) -> None:
        method = "dpo" if job.request["training_method"].get("method") == "dpo" else "supervised"
        report = check_file(job.training_path, min_examples=1, method=method)
        if report.error:
            job.emit("job_error", f"Training file invalid: {report.error['message']}", at, level="error")
            return self._end(job, "error", at)
        job.n_examples, job.token_count = report.n_examples, report.tokens
        hp = job.request
        job.total_steps = math.ceil(job.n_examples / hp["batch_size"]) * hp["n_epochs"]
        self._phase(job, "queued", at)

    def _started(self, job: FineTune, at: float) -> None:
        job.started_at = at
        for type_, message in (("job_start", "Job started"), ("model_downloading", "Downloading model"),
                               ("model_download_complete", "Model downloaded"),
                               ("training_data_downloading", "Downloading training data"),
                               ("training_data_download_complete", "Training data downloaded"),
                               ("training_start", f"Training started for model {job.request['model']}")):
            job.emit(type_, message, at)
        job.remaining = self.phases["step"]
        job.status = "running"

    def _stepped(self, job: FineTune, at: float) -> None:
        job.step += 1
        loss = 0.2 + 2.0 * math.exp(-4.0 * job.step / job.total_steps)
        per_epoch = job.total_steps // job.request["n_epochs"]
        row = {"train/global_step": job.step, "train/loss": round(loss, 6),
               "train/learning_rate": job.request["learning_rate"], "train/epoch": round(job.step / per_epoch, 4)}
        if job.step % per_epoch == 0:
            job.epochs_completed += 1
            if job.validation_path is not None:
                row["eval/loss"] = round(loss * 1.1 + 0.05, 6)
            self._checkpoint(job, at)
        job.metrics.append(row)
        job.remaining = self.phases["step"]
        if job.step == job.total_steps:
            job.emit("training_complete", "Training completed", at)
            job.emit("model_compressing", "Compressing output model", at)
            self._phase(job, "compressing", at)

    def _checkpoint(self, job: FineTune, at: float) -> None:
        path = f"s3://ftm-standin/{job.id}/checkpoint-{job.step}"
        final = job.step == job.total_steps
        job.checkpoints.append({"step": job.step, "path": path, "created_at": stamp(at),
                                "checkpoint_type": "Final" if final else f"Intermediate (step {job.step})"})
        job.emit("epoch_complete", f"Epoch {job.epochs_completed} completed, at step {job.step}", at)
        job.emit("checkpoint_save", f"New checkpoint saved at step {job.step}", at, checkpoint_path=path)

    def _compressed(self, job: FineTune, at: float) -> None:
        job.emit("model_compression_complete", "Model compression complete", at)
        job.emit("model_uploading", "Uploading output model", at)
        self._phase(job, "uploading", at)

    def _uploaded(self, job: FineTune, at: float) -> None:
        job.emit("model_upload_complete", f"Model upload complete: {job.output_name}", at,
                 model_path=f"s3://ftm-standin/{job.id}/final")
        job.emit("job_complete", f"Job finished at {stamp(at)}", at)
        self._end(job, "completed", at)

    def _cancelled(self, job: FineTune, at: float) -> None:
        job.emit("job_stopped", "Job cancelled", at)
        self._end(job, "cancelled", at)

    def _end(self, job: FineTune, status: str, at: float) -> None:
        job.status, job.terminal_at, job.updated_at = status, at, at

    def cancel(self, job: FineTune) -> None:
        """cancel_requested now, cancelled once the clock plays the request through."""
        now = time.time()
        job.emit("cancel_requested", "Cancel requested", now)
        self._phase(job, "cancel_requested", now)
        job.last = now

    def chat(self, model, ask):
        raise ApiError(404, f"The model '{model}' is not served by this stand-in (it trains only).",
                       param="model", code="model_not_found")
