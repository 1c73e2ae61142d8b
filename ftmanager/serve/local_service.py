"""`ftm serve`'s job service: every job is an ftm run of the local backend, in the one ledger.

The front keeps OpenAI's job records (LedgerState writes each request through to the ledger);
this service imports each job's files as datasets and submits a local run through
ftmanager.jobs. A job is a view of its run: whenever it is read, its status, finish, error,
events, checkpoints and model are read from the run (polled once first), and a cancel or pause
writes the run's status at once through ftmanager.jobs, so the API and `ftm show` always agree.
Unfinished runs are polled at start-up and when models are listed, so a run that ended while
nobody asked is recorded. The ledger gives each thread its own connection: any thread may call it.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

from .. import jobs
from ..front.service import ALIASES, Service, base_of
from ..front.state import ApiError, Job
from ..errors import FtmError
from ..facts import HYPERPARAMETERS, TERMINAL, epoch, iso
from ..hyperparameters import METHODS
from . import models, table
from .jobview import checkpoint, event, own_events, results_csv
from .ledger_state import LedgerState

OWNER = "ftm"  # the org part of the ft: names this server makes
log = logging.getLogger("ftm.serve")


def fine_tuned_name(base: str, suffix: str | None, run_id: str, owner: str = OWNER) -> str:
    """OpenAI's ft:<base>:<owner>:<suffix>:<id>, whose id is the ledger run's own (a model trained
    on an ft: model is named after that model's base, as OpenAI names it)."""
    return f"ft:{base_of(base)}:{owner}:{suffix or ''}:{run_id.removeprefix('run-')}"


def private(message: str, job: Job) -> str:
    """A message for the client with the server's paths taken out: an uploaded file by its id,
    anything else under FTM_HOME or the home folder by a word (the log keeps the whole line)."""
    from .. import paths

    for path, file_id in ((job.training_path, job.training_file), (job.validation_path, job.validation_file)):
        if path is not None:
            message = message.replace(str(path), f"file {file_id}")
    for place, word in ((paths.home(), "the server's FTM_HOME"), (Path.home(), "~")):
        message = message.replace(str(place), word)
    return message


def _check_kinds(job: Job) -> None:
    """A 400 naming the file whose examples are not the kind the job's method trains on
    (preference pairs for DPO, chat examples otherwise), before the job is recorded."""
    from ..front.openai.file_checks import file_kind

    wanted = "preference" if job.method == "dpo" else "chat"
    for param, path, file_id in (("training_file", job.training_path, job.training_file),
                                 ("validation_file", job.validation_path, job.validation_file)):
        kind = file_kind(path) if path is not None and path.exists() else None
        if kind not in (None, wanted):
            raise ApiError(400, f"File {file_id} holds {kind} examples, but a {job.method} job trains on "
                           f"{wanted} examples. Upload a {wanted} file, or use method type "
                           f"'{'dpo' if kind == 'preference' else 'supervised'}'.",
                           param=param, code="invalid_file_format")


class LocalService(Service):
    """Jobs trained by the local backend; chat answered by the model pool."""

    default_temperature = 0.0  # greedy: the same question, the same answer
    methods = ("supervised", "dpo")  # both train locally (DPO: backends/local/trainer/preference.py)
    state: LedgerState

    def __init__(self, pool=None, owner: str = OWNER, make_pool=None):
        # make_pool: how to build the pool on the first chat (a server that only trains loads nothing)
        self._pool, self._make_pool, self.owner = pool, make_pool, owner
        self._pool_lock = threading.Lock()
        self._submits = ThreadPoolExecutor(2, thread_name_prefix="ftm-submit")  # create returns at once
        self._pending: dict = {}  # job id -> the future of its import and submit

    @property
    def pool(self):
        with self._pool_lock:
            if self._pool is None:
                if self._make_pool is None:
                    from .. import engine

                    self._make_pool = engine.get().shared
                self._pool = self._make_pool()
            return self._pool

    def bind(self, state: LedgerState) -> None:
        super().bind(state)
        for job in state.jobs.values():
            if job.id not in state.run_ids and job.status not in TERMINAL:  # stopped mid-import
                self._fail(job, "server_restarted", "ftm serve stopped before this job's files were "
                           "imported. Create the job again.", None)
        self._follow()  # a run that ended while the server was down is recorded now

    def base_models(self) -> tuple[str, ...]:
        return tuple(table.table())

    def snapshot(self, model: str) -> str:
        snap = ALIASES.get(model)
        return snap if snap in table.table() else model

    def unknown_model(self, model: str, status: int) -> ApiError:
        if model.startswith("ft:"):
            return super().unknown_model(model, status)
        return table.unmapped(model, status)

    # --- jobs ----------------------------------------------------------------------------

    def start(self, job: Job) -> None:
        _check_kinds(job)
        upstream = self._upstream(job.model)
        served = table.lookup(base_of(job.model))
        if models.config(self._target(job.model).base) is None:  # refused now, not failed in a worker
            from .answers import cannot_load

            raise cannot_load(job.model)
        self.state.save_job(job)
        self._pending[job.id] = self._submits.submit(self._submit, job, served, upstream)

    def can_train_on(self, model: str) -> bool:
        return model in self.base_models() or self._upstream(model) is not None

    def _upstream(self, model: str) -> dict | None:
        """The ledger's row for an ft: model one of this server's jobs trained (OpenAI's SFT,
        then DPO on its model), or None for any other name."""
        if not model.startswith("ft:"):
            return None
        try:
            row = models.row_for(model)
        except ApiError:  # unknown, or a name two runs answer to
            return None
        return row if row["step"] is None and row["run_id"] in self.state.run_ids.values() else None

    def _submit(self, job: Job, served, upstream: str | None) -> None:
        from .imports import file_problem, submit

        try:
            problem = file_problem(job)
            if problem:
                with self.state.lock:
                    return self._fail(job, "invalid_training_file", problem["message"], problem["param"])
            run_id = submit(job, served, self.state.files, upstream)
        except Exception as err:  # noqa: BLE001 - any file we cannot import fails its job, not the server
            message = private(err.line(), job) if isinstance(err, FtmError) else "The training file could not be read."
            log.info("job %s: training file refused (%s)", job.id, type(err).__name__)
            with self.state.lock:
                return self._fail(job, "invalid_training_file", message, "training_file")
        with self.state.lock:
            self.state.run_ids[job.id] = run_id
            self.state.save_job(job, run_id=run_id,
                                fine_tuned_model=fine_tuned_name(job.model, job.suffix, run_id, self.owner))

    def refresh(self, job: Job) -> None:
        """Fill the job's record from its run (polled once first); a job with no run keeps its own."""
        run_id = self.state.run_ids.get(job.id)
        if run_id is None:
            return
        try:
            run, _ = jobs.refresh(run_id)
            if self._shown(job, run):
                return
            shown = jobs.show(run_id)
        except FtmError as err:
            log.info("job %s: run %s not read (%s)", job.id, run_id, err.line())
            return  # the ledger is busy: the job stays as it was, the next read tries again
        self._apply(job, shown)

    def _shown(self, job: Job, run: dict) -> bool:
        """Whether the job already shows this ended run (a resume would change it)."""
        ended = (run["status"], epoch(run["finished_at"]))
        if job.status not in TERMINAL or (job.status, job.finished_at) != ended:
            return False
        if job.status == "cancelled":  # cancelled at once: its worker may have been ending its step
            from .imports import reap_workers

            reap_workers([run["id"]])
        return True

    def cancel(self, job: Job) -> None:
        """Cancel the run, recorded at once (what OpenAI answers); the worker stops at its next step."""
        self._control(job, partial(jobs.cancel, at_once=True))
        self.refresh(job)

    def pause(self, job: Job) -> None:
        """Ask the worker to stop at its next step with a checkpoint; resume carries on from it."""
        self._control(job, partial(jobs.pause, at_once=True))
        self.refresh(job)

    def resume(self, job: Job) -> None:
        self._control(job, jobs.resume)
        self.refresh(job)

    def _follow(self) -> None:
        """Poll every unfinished run of this server once, so one that has ended is recorded."""
        for job in list(self.state.jobs.values()):
            if job.id in self.state.run_ids and job.status not in TERMINAL:
                self.refresh(job)

    def _control(self, job: Job, fn) -> None:
        if job.id not in self.state.run_ids and job.id in self._pending:
            self.state.lock.release()  # the import finishing needs the lock to record its run
            try:
                self._pending[job.id].exception(timeout=120)
            finally:
                self.state.lock.acquire()
        run_id = self.state.run_ids.get(job.id)
        if run_id is None:
            raise ApiError(400, f"Job {job.id} has no training run to change.", code="invalid_job_state")
        try:
            fn(run_id)
        except FtmError as err:  # in the job's words: the run id is ours, not the client's
            raise ApiError(400, f"Job {job.id}: {err.line().replace(run_id, 'this job')}",
                           code="invalid_job_state") from None

    def _fail(self, job: Job, code: str, message: str, param: str | None) -> None:
        error = {"code": code, "message": message, "param": param}
        job.emit(message, time.time(), level="error")
        job.finish("failed", time.time(), error)
        self.state.save_job(job, error=error, finished_at=iso(job.finished_at))  # no run holds this

    def _apply(self, job: Job, shown: dict) -> None:
        """Show a run (as jobs.show gives it) as the job: every field the API reads comes from it."""
        ft = fine_tuned_name(job.model, job.suffix, shown["id"], self.owner)
        job.status = "validating_files" if shown["status"] == "created" else shown["status"]
        job.finished_at = job.error = None  # a run resumed after it ended is unfinished again
        hp = shown.get("resolved_hyperparameters") or {}
        job.resolved = {k: hp[k] for k in (*HYPERPARAMETERS, *METHODS[job.method]) if k in hp} or None
        job.events = own_events(job) + [event(e, shown, ft) for e in shown["events"]]
        for e in job.events:
            e["message"] = private(e["message"], job)
        job.checkpoints = [checkpoint(c, job.id, f"{ft}:ckpt-step-{c['step']}") for c in shown["checkpoints"][-3:]]
        job.trained_tokens = shown.get("trained_tokens")
        if job.status in TERMINAL:
            self._finished(job, shown, ft)

    def _finished(self, job: Job, shown: dict, ft: str) -> None:
        from .imports import reap_workers

        error = None
        if job.status == "failed":
            error = {"code": shown["error_code"] or "training_error",
                     "message": private(shown["error_message"] or "", job),
                     "param": shown["error_param"]}
        job.finish(job.status, epoch(shown["finished_at"]) or time.time(), error)
        reap_workers([shown["id"]])
        if job.status == "succeeded" and job.fine_tuned_model is None:
            job.fine_tuned_model = ft
            if not job.result_files:
                path = self.state.save_text(results_csv(shown["metrics"]), "results-")
                job.result_files = [self.state.add_file("step_metrics.csv", "fine-tune-results", path,
                                                        base64=True).id]
                self.state.save_job(job, result_file=job.result_files[0])

    # --- models and chat -----------------------------------------------------------------

    def check_model(self, model: str) -> None:
        self._target(model)  # the 404, or the 400 of a name two runs answer to

    def models(self) -> list[dict]:
        self._follow()  # a job's model is listed once its run has succeeded, whoever asked
        return models.listing(self.state.organization)

    def model(self, model_id: str) -> dict:
        return models.lookup(model_id, self.state.organization)

    def delete_model(self, model_id: str) -> None:
        models.lookup(model_id, self.state.organization)
        raise ApiError(400, f"ftm serve keeps every model in the ledger; '{model_id}' stays served. Stop "
                       "using its name, or remove its run's weights yourself.", param="model",
                       code="unsupported")

    def chat(self, model: str, ask):
        from .answers import answer

        return answer(self.pool, self._target(model), ask, model)

    def max_completion_tokens(self, model: str) -> int | None:
        """The local model's context: no answer can be longer (None when its config cannot be read)."""
        return models.context(self._target(model).base)

    def configuration(self, model: str) -> str:
        """The weights and template that answer (a table edit or a new alias changes them)."""
        return repr(self._target(model))

    def _target(self, model: str):
        from .answers import cannot_load

        try:
            return models.target(model)
        except FtmError as err:  # a row whose local is no model: the detail names our paths
            log.warning("cannot answer with %s: %s", model, err.line())
            raise cannot_load(model) from None

    def close(self) -> None:
        self._submits.shutdown(wait=True, cancel_futures=True)
        from .imports import reap_workers

        if getattr(self, "state", None) is not None:
            reap_workers(self.state.run_ids.values())
        if self._pool is not None:
            self._pool.close()
