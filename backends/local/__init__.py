"""The local backend: QLoRA, LoRA or full fine-tuning in a detached worker process on this machine.

start() writes the run's spec into its run directory and launches the worker
(`python -m ftm_backends.local.trainer.worker`, or `accelerate launch` for more than one GPU); poll()
reads the worker's append-only progress file from the cursor's byte offset. This module
imports nothing heavy: torch, transformers and peft load only in the worker, in the model
pool's thread (generate()) and in export().
"""

from __future__ import annotations

import json
import logging
import os
import signal
import time
from dataclasses import asdict
from pathlib import Path

from ftmanager import paths
from ftmanager.backend import Backend, Checkpoint, Event, Progress, RunSpec, Uploads
from ftmanager.facts import (CANCELLED, FAILED, PAUSED, QUEUED, RUNNING, SUCCEEDED,
                             is_terminal)
from ftmanager.errors import BackendError, InvalidInput, NotFound, Refused

from .modeling.loading import check_base
from .trainer import rundir
from .trainer.launch import start_worker, wait_gone
from .trainer.options import (BASE_LEARNING_RATE, FULL_LEARNING_RATE, OPTIONS, check_method, needs_validation,
                              renamed, resolve_hyperparameters, resolve_options)

# bitsandbytes logs, on importing on a CPU with AVX512-BF16, that it could not fetch a fused
# kernel from the Hugging Face hub (the `kernels` package). ftm never takes that path (see
# modeling.loading.same_math_on_every_cpu), so the line is noise a user cannot act on.
logging.getLogger("bitsandbytes.backends.cpu.ops").addFilter(lambda r: "kernels-community" not in r.getMessage())

class LocalBackend(Backend):
    name = "local"
    description = (f"QLoRA, LoRA or full fine-tuning on this machine (transformers + peft + bitsandbytes); "
                   f"base learning rate {BASE_LEARNING_RATE:g} (full: {FULL_LEARNING_RATE:g}) "
                   f"x learning_rate_multiplier")
    default_model = "HuggingFaceTB/SmolLM2-135M-Instruct"
    options = OPTIONS
    methods = ("supervised", "dpo")  # DPO: trainer/preference.py
    base_learning_rate = BASE_LEARNING_RATE

    # --- the contract ------------------------------------------------------------------

    def check_model(self, model: str) -> None:
        """Refuse at submit a model no local run can load: an OpenAI model, a missing local path."""
        check_base(model)

    def check_options(self, options: dict) -> None:
        """Refuse unknown options and bad values at submit, before the run is recorded."""
        super().check_options(renamed(options))  # -p method=qlora: training_type's old name
        resolve_options(options)

    def start(self, spec: RunSpec, uploads: Uploads) -> str:
        """Write the spec into the run dir and launch the detached worker; returns at once."""
        try:  # refuse for good what can never run, before anything runs
            opts = resolve_options(spec.options)
            check_base(spec.base_model or self.default_model)
            needs_validation(opts, spec.validation_file)
            check_method(spec.hyperparameters, renamed(spec.options), opts)
        except InvalidInput as err:
            raise Refused(err.what, err.next_step) from None
        run_dir = Path(spec.run_dir).resolve()
        run_dir.mkdir(parents=True, exist_ok=True)
        self._write_spec(run_dir, spec)
        (run_dir / rundir.CANCEL).unlink(missing_ok=True)
        (run_dir / rundir.PAUSE).unlink(missing_ok=True)
        rundir.append(run_dir, "status", status=QUEUED)
        rundir.append(run_dir, "event", message=f"Created fine-tuning job: {spec.run_id}")
        start_worker(run_dir, opts["gpus"], resume=False)
        return self._job_id(spec.run_id, run_dir)

    def find(self, run_id: str) -> str | None:
        """The job an interrupted start() launched for run_id, so it is never launched twice."""
        run_dir = paths.runs_dir() / run_id
        return run_id if (run_dir / rundir.LAUNCH).exists() else None

    def poll(self, job_id: str, cursor: dict) -> Progress:
        """Status and what is new in the progress file since cursor; a lost worker fails the run."""
        run_dir = self._dir(job_id)
        cursor = dict(cursor or {})
        prog = Progress(status=cursor.get("status", QUEUED))
        self._read(run_dir, prog, cursor)
        if not is_terminal(prog.status) and prog.status != PAUSED:  # paused: a checkpoint awaits resume
            reason = self._lost(run_dir, cursor)
            if reason:
                self._read(run_dir, prog, cursor)  # it may have finished just before exiting
            if reason and not is_terminal(prog.status):
                rundir.append(run_dir, "status", status=FAILED,
                                error={"code": "worker_lost", "message": reason})
                self._read(run_dir, prog, cursor)
        prog.total_steps = cursor.get("total_steps")
        prog.eta_seconds = cursor.get("eta") if not is_terminal(prog.status) else 0.0
        prog.finished_at = cursor.get("ended") if is_terminal(prog.status) else None
        prog.hyperparameters = cursor.get("hyperparameters")
        prog.cursor = cursor
        return prog

    def cancel(self, job_id: str) -> None:
        """Ask the worker to stop at its next step (it saves a checkpoint first)."""
        run_dir = self._dir(job_id)
        (run_dir / rundir.CANCEL).touch()
        if not is_terminal(self._status(run_dir)) and rundir.worker_gone(run_dir):
            rundir.append(run_dir, "status", status=CANCELLED)

    def pause(self, job_id: str) -> None:
        """Ask the worker to stop at its next step, save a checkpoint and wait for resume()."""
        run_dir = self._dir(job_id)
        status = self._status(run_dir)
        if is_terminal(status) or status == PAUSED:
            raise BackendError(f"local job {job_id} is already {status}", "Nothing to pause.")
        if rundir.worker_gone(run_dir):
            raise BackendError(f"local job {job_id} has no running worker",
                               "Run `ftm sync` to record that, then resume it from its last checkpoint.")
        (run_dir / rundir.PAUSE).touch()

    def resume(self, job_id: str, spec: RunSpec) -> str | None:
        """Let a paused worker carry on; else relaunch from the last complete checkpoint
        (optimizer, scheduler, RNG, data position)."""
        run_dir = self._dir(job_id)
        status = self._status(run_dir)
        if status == SUCCEEDED:
            raise BackendError(f"run {spec.run_id} already succeeded", "Re-run it to train again.")
        pause = run_dir / rundir.PAUSE
        if pause.exists() and not rundir.worker_gone(run_dir):
            pause.unlink()
            rundir.append(run_dir, "status", status=RUNNING)  # the worker carries on within a second
            return job_id
        if not wait_gone(run_dir, 30.0 if is_terminal(status) else 0.0):
            raise BackendError(f"run {spec.run_id} is still running", "Wait for it, or cancel it first.")
        pause.unlink(missing_ok=True)
        (run_dir / rundir.CANCEL).unlink(missing_ok=True)
        self._write_spec(run_dir, spec)  # its files where they are now: FTM_HOME may have moved
        rundir.append(run_dir, "status", status=QUEUED)
        rundir.append(run_dir, "event", message="Resuming from the last complete checkpoint")
        start_worker(run_dir, resolve_options(spec.options)["gpus"], resume=True)
        return job_id

    def resolve(self, spec: RunSpec) -> dict:
        """The hyperparameters the run trains with (at submit, before the run is recorded)."""
        opts = resolve_options(spec.options)
        check_method(spec.hyperparameters, renamed(spec.options), opts)
        return resolve_hyperparameters(spec.hyperparameters, opts, spec.n_examples)

    def poll_interval(self, status: str, last: float | None) -> float:
        return 1.0

    def reap(self, job_id: str) -> None:
        """Collect the worker's exit status if this process launched it (no <defunct> left behind)."""
        launch = (Path(job_id) if os.sep in job_id else paths.runs_dir() / job_id) / rundir.LAUNCH
        if launch.exists():
            rundir.reap(json.loads(launch.read_text())["pid"])

    # --- extras the CLI calls (ftm generate / chat / export) ----------------------------

    def generate(self, result_model: str | None, result_path: str | None, base_model: str | None,
                 conversations: list[list[dict]], max_new_tokens: int = 256,
                 temperature: float = 0.0) -> list[str]:
        """Assistant replies to each conversation, decoded together by this process's model pool."""
        from ftmanager.asks import Ask

        from .engine.pool import shared
        from .modeling.loading import target

        where = target(result_path, base_model or self.default_model)
        done = shared().answers([Ask(where, messages, max_tokens=max_new_tokens, temperature=temperature)
                                 for messages in conversations])
        return [answer.text.strip() for answer in done]

    def answer_logprobs(self, result_model: str | None, result_path: str | None, base_model: str | None,
                        conversations: list[list[dict]]) -> list[tuple[float, int]]:
        """Log-probability and token count of each last assistant message (for perplexity)."""
        from .engine.scoring import answer_logprobs

        return answer_logprobs(result_path, base_model or self.default_model, conversations)

    def export(self, result_path: str, base_model: str | None, out_dir: str, merge: bool = True) -> Path:
        """Write the model (merged safetensors, or the adapter) with tokenizer and template."""
        from .engine.merging import export

        return export(result_path, base_model or self.default_model, out_dir, merge=merge)

    # --- helpers -------------------------------------------------------------------------

    @staticmethod
    def _job_id(run_id: str, run_dir: Path) -> str:
        """The run id when the run dir is the usual one under FTM_HOME, else its path."""
        usual = (paths.runs_dir() / run_id).resolve()
        return run_id if run_dir == usual else str(run_dir)

    def _write_spec(self, run_dir: Path, spec: RunSpec) -> None:
        """spec.json, all the worker knows of its run (written aside, then renamed into place)."""
        data = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(spec).items()}
        data.update(base_model=spec.base_model or self.default_model, run_dir=str(run_dir),
                    hyperparameters=spec.hyperparameters.to_dict(), resolved_hyperparameters=self.resolve(spec))
        tmp = run_dir / (rundir.SPEC + ".tmp")
        tmp.write_text(json.dumps(data, indent=1))
        tmp.replace(run_dir / rundir.SPEC)

    @staticmethod
    def _dir(job_id: str) -> Path:
        run_dir = Path(job_id) if os.sep in job_id else paths.runs_dir() / job_id
        if not (run_dir / rundir.SPEC).exists():
            raise NotFound(f"no local run directory for job {job_id}", "Check FTM_HOME.")
        return run_dir

    def _lost(self, run_dir: Path, cursor: dict) -> str | None:
        """Why the worker is lost: its process is gone, or it has been silent too long."""
        reason = rundir.worker_gone(run_dir)
        if reason:
            return reason
        silent = time.time() - cursor.get("beat", time.time())
        if silent > rundir.HEARTBEAT_STALE:
            pid = json.loads((run_dir / rundir.LAUNCH).read_text())["pid"]
            os.killpg(pid, signal.SIGKILL)  # a hung worker must not report after it was failed
            return f"worker process {pid} sent no heartbeat for {silent:.0f} s and was stopped"
        return None

    def _status(self, run_dir: Path) -> str:
        cursor: dict = {}
        prog = Progress(status=QUEUED)
        self._read(run_dir, prog, cursor)
        return prog.status

    def _read(self, run_dir: Path, prog: Progress, cursor: dict) -> None:
        records, cursor["offset"] = rundir.read_from(run_dir, cursor.get("offset", 0))
        for pos, rec in records:
            cursor["beat"] = rec["t"]
            apply_record(prog, cursor, pos, rec)
        cursor["status"] = prog.status


def apply_record(prog: Progress, cursor: dict, pos: int, rec: dict) -> None:
    """Fold one progress record into prog (what is new) and cursor (what persists)."""
    kind, t = rec["kind"], rec["t"]
    if kind == "status":
        prog.status = rec["status"]
        cursor["ended"] = t if is_terminal(prog.status) else None  # when it ended, not when polled
        prog.error = rec.get("error") if rec["status"] == FAILED else None
        if prog.error:
            prog.events.append(Event(f"local-evt-{pos}", t, f"Run failed: {prog.error['message']}", "error"))
    elif kind == "event":
        prog.events.append(Event(f"local-evt-{pos}", t, rec["message"], rec.get("level", "info")))
    elif kind == "metrics":
        data = rec["data"]
        # every figure but the run's length: DPO's rewards/* and logps/* go to the ledger by name
        prog.metrics.append({k: v for k, v in data.items() if k != "total_steps"})
        cursor["total_steps"], cursor["eta"] = data.get("total_steps"), rec.get("eta_seconds")
        cursor["last_metrics"] = prog.metrics[-1]
    elif kind == "checkpoint":
        metrics = cursor.get("last_metrics") if (cursor.get("last_metrics") or {}).get("step") == rec["step"] else {}
        prog.checkpoints.append(Checkpoint(rec["step"], rec["model_id"], rec["path"], metrics or {}, t))
    elif kind == "hyperparameters":
        cursor["hyperparameters"], cursor["total_steps"] = rec["hyperparameters"], rec["total_steps"]
    elif kind == "result":
        prog.result_model, prog.result_path = rec["model"], rec["path"]
        prog.trained_tokens = rec.get("trained_tokens")
