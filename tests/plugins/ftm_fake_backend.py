"""A fake provider for ftm's tests, registered through the `ftm.backends` entry-point group
exactly as a third-party package would be (this folder is put on PYTHONPATH).

It keeps its jobs as JSON files in FTM_FAKE_DIR, so several processes see one provider.
Each poll moves a job one step along a script chosen by the base model's name:
  fake-ok       validating_files, queued, running x3 (metrics), succeeded
  fake-fail     validating_files, queued, running, failed (error code and message)
  fake-odd      validating_files, compacting (a status ftm has never heard of), succeeded
  fake-slow     validating_files, queued, running forever (until cancelled or paused)
  fake-refuse   start() is refused outright (errors.Refused: no job exists)
  fake-drop     start() creates the job, then the "connection drops" (an ambiguous error)
  fake-lost     start() raises NotFound the first time (a lookup that failed: not a refusal),
                then goes as fake-ok
  fake:JOB      the model a fake job trained (a DPO run on top of an SFT run): goes as fake-ok
Any other model is refused at submit by check_model(). A job that ends reports when it ended.
DPO runs (preference data) go the same way as supervised ones.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from ftmanager.backend import Backend, Checkpoint, Event, Option, Progress
from ftmanager.errors import InvalidInput, NotFound, Refused

SCRIPTS = {
    "fake-ok": ["validating_files", "queued", "running", "running", "running", "succeeded"],
    "fake-fail": ["validating_files", "queued", "running", "failed"],
    "fake-odd": ["validating_files", "compacting", "succeeded"],
    "fake-slow": ["validating_files", "queued"] + ["running"] * 10_000,
    "fake-drop": ["validating_files", "queued", "running", "succeeded"],
}
SCRIPTS["fake-lost"] = SCRIPTS["fake-ok"]
TERMINAL = ("succeeded", "failed", "cancelled")


class FakeBackend(Backend):
    name = "fake"
    description = "A scripted fake provider for tests"
    default_model = "fake-ok"
    options = {"note": Option("any text; recorded, otherwise ignored"),
               "loud": Option("print more (a flag made from a declared bool)", bool, False)}
    account = "fake://provider"
    methods = ("supervised", "dpo")  # a DPO job reports TRL's reward figures beside its loss

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

    def check_model(self, model: str) -> None:
        if model not in SCRIPTS and model != "fake-refuse" and not model.startswith("fake:"):
            raise InvalidInput(f"the fake provider has no model {model}", f"Choose one of: {', '.join(SCRIPTS)}.")

    def start(self, spec, uploads) -> str:
        if spec.base_model == "fake-refuse":
            raise Refused("the fake provider refused the job (403)", "Try another backend.")
        lost = self.dir / f"lost-{spec.run_id}"
        if spec.base_model == "fake-lost" and not lost.exists():
            lost.touch()
            raise NotFound("the fake provider lost track of a file for a moment", "Try again.")
        with uploads.lock(spec.dataset_id, self.account):
            file_id = uploads.get(spec.dataset_id, self.account)
            if not file_id:
                file_id = self._upload(spec)
                uploads.put(spec.dataset_id, self.account, file_id, spec.training_file.stat().st_size)
        job_id = f"fakejob-{len(list(self.dir.glob('fakejob-*.json'))) + 1}-{spec.run_id}"
        self._save({"id": job_id, "run_id": spec.run_id, "model": spec.base_model, "step": 0,
                    "file": file_id, "training_file": str(spec.training_file),
                    "hyperparameters": spec.hyperparameters.to_dict(),
                    "cancelled": False, "paused": False})
        if spec.base_model == "fake-drop":
            raise ConnectionResetError("connection dropped after the job was created")
        return job_id

    def _upload(self, spec) -> str:
        """An upload the provider counts (tests check that a dataset goes up once per account)."""
        uploads = self.dir / "uploads.log"
        with open(uploads, "a") as log:
            log.write(spec.dataset_id + "\n")
        time.sleep(float(os.environ.get("FTM_FAKE_UPLOAD_SECONDS") or 0))
        return f"file-{spec.dataset_id[:8]}"

    def uploads(self) -> list[str]:
        """Every dataset id uploaded, once per upload."""
        path = self.dir / "uploads.log"
        return path.read_text().split() if path.exists() else []

    def find(self, run_id: str) -> str | None:
        for path in self.dir.glob("fakejob-*.json"):
            job = json.loads(path.read_text())
            if job["run_id"] == run_id:
                return job["id"]
        return None

    def jobs(self) -> list[dict]:
        """All jobs this fake provider holds (tests count them)."""
        return [json.loads(p.read_text()) for p in sorted(self.dir.glob("fakejob-*.json"))]

    def poll(self, job_id: str, cursor: dict) -> Progress:
        job = self._load(job_id)
        script = SCRIPTS.get(job["model"], SCRIPTS["fake-ok"])  # a fake: model trains as fake-ok does
        if not job["cancelled"] and not job["paused"]:
            job["step"] = min(job["step"] + 1, len(script) - 1)
            self._save(job)
        status = "cancelled" if job["cancelled"] else "paused" if job["paused"] else script[job["step"]]
        if status in TERMINAL and not job.get("finished_at"):
            job["finished_at"] = time.time()
            self._save(job)
        seen = cursor.get("step", -1)
        progress = Progress(status=status, cursor={"step": job["step"]}, total_steps=3,
                            finished_at=job.get("finished_at"))
        if job["step"] > seen:
            progress.events.append(Event(f"{job_id}-evt-{job['step']}", time.time(), f"fake: now {status}"))
            if status == "running":
                n = script[: job["step"] + 1].count("running")
                progress.metrics.append({"step": n, "train_loss": 2.0 / n, "train_accuracy": 0.2 * n})
                if job["hyperparameters"].get("method") == "dpo":
                    progress.metrics[-1].update({"rewards/margins": 0.5 * n, "rewards/accuracies": 0.25 + 0.25 * n})
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
        job["finished_at"] = job.get("finished_at") or time.time()
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


class SupervisedOnlyBackend(FakeBackend):
    """The fake provider without DPO: what a submit or a chain's re-run meets on a backend that
    trains supervised only (every real backend has DPO now)."""

    name = "fake-sft"
    description = "The scripted fake provider, supervised fine-tuning only"
    methods = ("supervised",)
