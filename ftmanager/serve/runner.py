"""`ftm serve`'s job runner: every job is an ftm run of the local backend, in the one ledger.

The HTTP front (ftmanager.api) keeps OpenAI's job records; this runner starts each job as a
local run through ftmanager.jobs and, whenever the front reads a job, copies the run's status,
events, metrics, checkpoints and model from the ledger into it. sqlite3 lets a connection be
used only by the thread that made it, and the front answers each client on its own thread:
so every ledger call goes through `_ledger`, a one-thread executor that owns the connection.
"""

from __future__ import annotations

import hashlib
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Iterator

from ..api.runner import JobRunner, Reply
from ..api.state import ApiError, Job, State
from ..errors import FtmError
from ..facts import HYPERPARAMETERS, TERMINAL, epoch
from . import ledger_calls as calls
from . import table
from .pool import ModelPool

OWNER = "ftm"  # the org part of the ft: names this server makes
DEFAULT_MAX_TOKENS = 256


def fine_tuned_name(base: str, suffix: str | None, run_id: str, owner: str = OWNER) -> str:
    """OpenAI's ft:<base>:<owner>:<suffix>:<id>, whose id is the ledger run's own."""
    return f"ft:{base}:{owner}:{suffix or ''}:{run_id.removeprefix('run-')}"


def run_of(model: str) -> str | None:
    """The ledger run id behind an ft: name this server made (checkpoint names included)."""
    if not model.startswith("ft:") or model.count(":") < 4:
        return None
    return "run-" + model.split(":ckpt-step-")[0].rsplit(":", 1)[1]


class LocalRunner(JobRunner):
    """Jobs trained by the local backend; chat answered by base models with adapters."""

    def __init__(self, pool: ModelPool | None = None, owner: str = OWNER):
        self.pool, self.owner = pool or ModelPool(), owner
        self._ledger = ThreadPoolExecutor(1, thread_name_prefix="ftm-ledger")
        self._runs: dict[str, Future] = {}  # job id -> its run id, once submitted
        self._paused: set[str] = set()
        self._own: dict[str, list] = {}  # job id -> events of the front's own (before the run)
        self._targets: dict[str, tuple[str, str | None]] = {}  # model -> (base dir, adapter dir)

    def _call(self, fn, *args):
        return self._ledger.submit(fn, *args).result()

    def bind(self, state: State) -> None:
        super().bind(state)
        for name, job_id in self._call(calls.served_models):
            state.add_model(name, job_id)  # models made before a restart keep answering

    def base_models(self) -> tuple[str, ...]:
        return tuple(table.table())

    def unknown_model(self, model: str, status: int) -> ApiError:
        if model.startswith("ft:"):
            return super().unknown_model(model, status)
        return table.unmapped(model, status)

    # --- jobs ----------------------------------------------------------------------------

    def start(self, job: Job) -> None:
        now = time.time()
        job.emit(f"Created fine-tuning job: {job.id}", now)
        job.emit(f"Validating training file: {job.training_file}", now)
        self._own[job.id] = list(job.events)
        if job.model.startswith("ft:"):
            return self._fail(job, "unsupported_model", "ftm serve cannot continue training an ft: "
                              "model yet; start a job from its base model instead", "model")
        served = table.lookup(job.model)
        names = [self.state.files[f].filename for f in (job.training_file, job.validation_file) if f]
        self._runs[job.id] = self._ledger.submit(calls.submit, job, served, names)

    def refresh(self, job: Job) -> None:
        future = self._runs.get(job.id)
        if future is None or not future.done() or (job.status in TERMINAL and job.id not in self._paused):
            return
        try:
            run_id = future.result()
        except FtmError as err:
            return self._fail(job, "invalid_training_file", err.line(), "training_file")
        try:
            shown = self._call(calls.poll, run_id)
        except FtmError:
            return  # the ledger is busy: the job stays as it was, the next read tries again
        self._apply(job, shown)

    def cancel(self, job: Job) -> None:
        self._control(job, calls.cancel)
        self.refresh(job)

    def pause(self, job: Job) -> None:
        """Stop the worker at its next step (it saves a checkpoint); resume carries on from it."""
        self._control(job, calls.pause)
        self._paused.add(job.id)
        job.status = "paused"

    def resume(self, job: Job) -> None:
        self._control(job, calls.resume)
        self._paused.discard(job.id)
        job.status = "queued"

    def _control(self, job: Job, fn) -> None:
        future = self._runs.get(job.id)
        if future is None:
            raise ApiError(400, f"Job {job.id} never started training.", code="invalid_job_state")
        try:
            self._call(fn, future.result(timeout=120))
        except FtmError as err:
            raise ApiError(400, err.line(), code="invalid_job_state") from None

    def _fail(self, job: Job, code: str, message: str, param: str | None) -> None:
        job.emit(message, time.time(), level="error")
        job.emit("Fine-tuning job failed", time.time(), level="error")
        job.finish("failed", time.time(), {"code": code, "message": message, "param": param})

    def _apply(self, job: Job, shown: dict) -> None:
        """Copy a run (as jobs.show gives it) into the job record."""
        ft = fine_tuned_name(job.model, job.suffix, shown["id"], self.owner)
        job.status = _status(shown["status"], job.id in self._paused)
        hp = shown.get("resolved_hyperparameters") or {}
        job.resolved = {k: hp[k] for k in HYPERPARAMETERS if k in hp} or None
        job.events = self._own.get(job.id, []) + [_event(e, shown, ft) for e in shown["events"]]
        self._checkpoints(job, shown, ft)
        if job.status == "failed":
            job.finish("failed", epoch(shown["finished_at"]), {
                "code": shown["error_code"] or "training_error", "message": shown["error_message"] or "",
                "param": shown["error_param"]})
        elif job.status in TERMINAL:
            job.finish(job.status, epoch(shown["finished_at"]))
        if job.status == "succeeded" and job.fine_tuned_model is None:
            self._succeeded(job, shown, ft)

    def _checkpoints(self, job: Job, shown: dict, ft: str) -> None:
        kept = shown["checkpoints"][-3:]  # like OpenAI: only the last three are listed and served
        job.checkpoints = [_checkpoint(c, job.id, f"{ft}:ckpt-step-{c['step']}") for c in kept]
        for c in shown["checkpoints"]:
            name = f"{ft}:ckpt-step-{c['step']}"
            if c not in kept:
                self.state.models.pop(name, None)
            elif name not in self.state.models:
                self.state.add_model(name, job.id)

    def _succeeded(self, job: Job, shown: dict, ft: str) -> None:
        job.fine_tuned_model, job.trained_tokens = ft, shown.get("trained_tokens")
        self.state.add_model(ft, job.id)
        path = self.state.new_path("results-")
        path.write_text(calls.results_csv(shown["metrics"]))
        job.result_files = [self.state.add_file("step_metrics.csv", "fine-tune-results", path).id]
        self._ledger.submit(calls.mark_served, shown["id"], ft, job.id)

    # --- chat ----------------------------------------------------------------------------

    def answer(self, model: str, messages: list[dict]) -> str:
        return self.reply(model, messages, {}).text

    def reply(self, model: str, messages: list[dict], params: dict) -> Reply:
        last = Reply()
        for piece in self.stream(model, messages, params):
            if isinstance(piece, Reply):
                last = piece
        return last

    def stream(self, model: str, messages: list[dict], params: dict) -> Iterator[str | Reply]:
        base, adapter = self._target(model)
        limit = params.get("max_tokens") or DEFAULT_MAX_TOKENS
        try:  # temperature defaults to 0 here (greedy: the same question, the same answer)
            yield from self.pool.generate(base, adapter, messages, limit, params.get("temperature") or 0.0)
        except ApiError:
            raise
        except FtmError as err:
            raise ApiError(400, err.line(), param="model") from None
        except Exception as err:  # noqa: BLE001 - a client hears OpenAI's 500, not a dropped line
            raise ApiError(500, f"The server had an error while answering: {type(err).__name__}: {err}",
                           type="server_error") from None

    def _target(self, model: str) -> tuple[str, str | None]:
        """(base model directory, adapter directory or None) that answer for `model`."""
        if model not in self._targets:
            try:
                if run_of(model):
                    self._targets[model] = self._call(calls.adapter_of, run_of(model), model)
                else:
                    self._targets[model] = (calls.local_dir(table.lookup(model, 404).local), None)
            except FtmError as err:
                raise ApiError(404, f"The model '{model}' cannot be served: {err.line()}", param="model",
                               code="model_not_found") from None
        return self._targets[model]

    def close(self) -> None:
        self.pool.close()
        self._ledger.submit(calls.close_ledger).result()
        self._ledger.shutdown()


def _status(status: str, paused: bool) -> str:
    if paused and status not in ("succeeded", "failed"):
        return "paused"  # the worker stopped (the ledger says cancelled) until resume
    return "validating_files" if status == "created" else status


def _stable_id(prefix: str, *parts) -> str:
    """The same API id for the same ledger row on every read, so `after` paging holds."""
    return prefix + hashlib.sha1(":".join(map(str, parts)).encode()).hexdigest()[:24]


def _event(e: dict, shown: dict, ft: str) -> dict:
    """A ledger event as an API event: local model ids as ft: names, step messages as metrics."""
    run_id = shown["id"]
    message = e["message"].replace(f"local:{run_id}:step-", f"{ft}:ckpt-step-").replace(f"local:{run_id}", ft)
    out = {"object": "fine_tuning.job.event", "id": _stable_id("ftevent-", run_id, e["id"]),
           "created_at": int(epoch(e["created_at"]) or 0), "level": e["level"] or "info",
           "message": message, "data": {}, "type": "message"}
    metrics = calls.step_metrics(message, shown)
    if metrics:
        out.update(type="metrics", data=metrics)
    return out


def _checkpoint(c: dict, job_id: str, name: str) -> dict:
    metrics = {k: v for k, v in (c["metrics"] or {}).items() if k != "step" and v is not None}
    return {"object": "fine_tuning.job.checkpoint", "id": _stable_id("ftckpt_", job_id, c["step"]),
            "created_at": int(epoch(c["created_at"]) or 0), "fine_tuned_model_checkpoint": name,
            "fine_tuning_job_id": job_id, "metrics": {"step": c["step"], **metrics}, "step_number": c["step"]}
