"""A fake provider for ftm's tests, registered through the `ftm.backends` entry-point group
exactly as a third-party package would be (this folder is put on PYTHONPATH).

It keeps its jobs as JSON files in FTM_FAKE_DIR, so several processes see one provider.
Each poll moves a job one step along a script chosen by the base model's name:
  fake-ok       validating_files, queued, running x3 (metrics), succeeded
  fake-fail     validating_files, queued, running, failed (error code and message)
  fake-odd      validating_files, compacting (a status ftm has never heard of), succeeded
  fake-slow     validating_files, queued, running forever (until cancelled or paused)
  fake-refuse   start() is refused outright (a definite error: no job exists)
  fake-drop     start() creates the job, then the "connection drops" (an ambiguous error)
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from ftmanager.backend import Backend, Checkpoint, Event, Progress
from ftmanager.errors import BackendError

SCRIPTS = {
    "fake-ok": ["validating_files", "queued", "running", "running", "running", "succeeded"],
    "fake-fail": ["validating_files", "queued", "running", "failed"],
    "fake-odd": ["validating_files", "compacting", "succeeded"],
    "fake-slow": ["validating_files", "queued"] + ["running"] * 10_000,
    "fake-drop": ["validating_files", "queued", "running", "succeeded"],
}


class FakeBackend(Backend):
    name = "fake"
    description = "A scripted fake provider for tests"
    default_model = "fake-ok"
    options = {"note": "any text; recorded, otherwise ignored"}
    account = "fake://provider"

    def __init__(self):
        self.dir = Path(os.environ["FTM_FAKE_DIR"])
        self.dir.mkdir(parents=True, exist_ok=True)

    def _path(self, job_id: str) -> Path:
        return self.dir / f"{job_id}.json"

    def _load(self, job_id: str) -> dict:
        return json.loads(self._path(job_id).read_text())

    def _save(self, job: dict) -> None:
        tmp = self._path(job["id"]).with_suffix(".tmp")
        tmp.write_text(json.dumps(job))
        os.replace(tmp, self._path(job["id"]))

    def start(self, spec, uploads) -> str:
        if spec.base_model == "fake-refuse":
            raise BackendError("the fake provider refused the job (403)", "Try another backend.")
        if spec.base_model not in SCRIPTS:
            raise BackendError(f"the fake provider has no model {spec.base_model}", "")
        file_id = uploads.get(spec.dataset_id, self.account)
        if not file_id:
            file_id = f"file-{spec.dataset_id[:8]}"
            uploads.put(spec.dataset_id, self.account, file_id, spec.training_file.stat().st_size)
        job_id = f"fakejob-{len(list(self.dir.glob('*.json'))) + 1}-{spec.run_id}"
        self._save({"id": job_id, "run_id": spec.run_id, "model": spec.base_model, "step": 0,
                    "file": file_id, "training_file": str(spec.training_file),
                    "hyperparameters": spec.hyperparameters,
                    "cancelled": False, "paused": False})
        if spec.base_model == "fake-drop":
            raise ConnectionResetError("connection dropped after the job was created")
        return job_id

    def find(self, run_id: str) -> str | None:
        for path in self.dir.glob("*.json"):
            job = json.loads(path.read_text())
            if job["run_id"] == run_id:
                return job["id"]
        return None

    def jobs(self) -> list[dict]:
        """All jobs this fake provider holds (tests count them)."""
        return [json.loads(p.read_text()) for p in sorted(self.dir.glob("*.json"))]

    def poll(self, job_id: str, cursor: dict) -> Progress:
        job = self._load(job_id)
        script = SCRIPTS[job["model"]]
        if not job["cancelled"] and not job["paused"]:
            job["step"] = min(job["step"] + 1, len(script) - 1)
            self._save(job)
        status = "cancelled" if job["cancelled"] else "paused" if job["paused"] else script[job["step"]]
        seen = cursor.get("step", -1)
        progress = Progress(status=status, cursor={"step": job["step"]}, total_steps=3)
        if job["step"] > seen:
            progress.events.append(Event(f"{job_id}-evt-{job['step']}", time.time(), f"fake: now {status}"))
            if status == "running":
                n = script[: job["step"] + 1].count("running")
                progress.metrics.append({"step": n, "train_loss": 2.0 / n, "train_accuracy": 0.2 * n})
                progress.checkpoints.append(Checkpoint(step=n, model_id=f"fake:{job_id}:ckpt-step-{n}"))
        if status == "succeeded":
            progress.result_model = f"fake:{job_id}"
            progress.trained_tokens = 1234
            auto = {"n_epochs": 3, "batch_size": 1, "learning_rate_multiplier": 2.0}
            asked = job["hyperparameters"]
            progress.hyperparameters = {k: v if asked.get(k, "auto") == "auto" else asked[k] for k, v in auto.items()}
        if status == "failed":
            progress.error = {"code": "invalid_n_examples", "message": "the fake job failed", "param": "training_file"}
        return progress

    def cancel(self, job_id: str) -> None:
        job = self._load(job_id)
        job["cancelled"] = True
        self._save(job)

    def pause(self, job_id: str) -> None:
        job = self._load(job_id)
        job["paused"] = True
        self._save(job)

    def resume(self, job_id: str, spec) -> None:
        job = self._load(job_id)
        job["paused"] = False
        self._save(job)

    def generate(self, result_model, result_path, base_model, conversations, max_new_tokens=256):
        """A fine-tuned fake model answers what it was trained on; a base model knows nothing."""
        answers = {}
        if result_model:
            job = self._load(result_model.split(":", 1)[1])
            for line in open(job["training_file"], encoding="utf-8"):
                messages = json.loads(line)["messages"]
                users = [m["content"] for m in messages if m["role"] == "user"]
                answers[users[-1]] = [m["content"] for m in messages if m["role"] == "assistant"][-1]
        return [answers.get([m["content"] for m in c if m["role"] == "user"][-1], "I do not know.")
                for c in conversations]

    def poll_interval(self, status: str, last: float | None) -> float:
        return 0.01
