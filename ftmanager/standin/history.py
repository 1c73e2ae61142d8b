"""History made without ftm, seeded into an OpenAI stand-in (`ftm standin --history FILE`).

A JSON object: "files" (each {"name": key, "filename", "lines": [example objects] or "text",
"purpose", "deleted", "refuse_download"}) and "jobs" (each {"model", "training_file" and
"validation_file" naming files by their key, "status": succeeded | failed | cancelled, "method":
supervised | dpo, "hyperparameters", "suffix", "seed", "metadata", "events": how many, "checkpoints",
"created_at", "trained_tokens", "error", "repeat": this job so many times, "name", and "on": the
name of an earlier succeeded job whose ft: model this one trains on, as OpenAI's DPO after SFT}).
Jobs are made as if they had run long ago: every event, checkpoint and metric in place, ended, in
the order given (so the last is the newest). A refused download answers OpenAI's 400 "Not allowed
to download files of purpose: ..."; a deleted file is a 404 while its jobs still name it.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import InvalidInput
from ..front.service import base_of
from ..front.state import Job, new_id
from .clock import dpo_figures

STATUSES = ("succeeded", "failed", "cancelled")
FOREVER = 10**9  # a refused download stays refused


def load(path: Path) -> dict:
    """The history file, or one line saying why it cannot be read."""
    try:
        history = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise InvalidInput(f"cannot read the history file {path} ({err})", "Give a JSON file as described in `ftm standin --help`.") from None
    if not isinstance(history, dict) or not isinstance(history.get("jobs", []), list):
        raise InvalidInput(f"{path} is not a history object with a list of jobs", "See `ftm standin --help`.")
    return history


def seed(server, history: dict) -> list[str]:
    """Put history's files and jobs into an OpenAI stand-in; returns the job ids, oldest first."""
    state = server.state
    with state.lock:
        files = {f["name"]: _file(server, f) for f in history.get("files", [])}
        named: dict[str, str] = {}  # a job's name -> its model (the last made, where repeated)
        made = [_job(state, spec, files, i, named) for i, spec in enumerate(_repeated(history.get("jobs", [])))]
        for f in history.get("files", []):
            if f.get("deleted"):
                state.delete_file(files[f["name"]])
    return made


def _repeated(jobs: list[dict]):
    for spec in jobs:
        for _ in range(int(spec.get("repeat", 1))):
            yield spec


def _file(server, spec: dict) -> str:
    text = spec.get("text")
    if text is None:
        text = "".join(json.dumps(line) + "\n" for line in spec.get("lines", []))
    path = server.state.save_text(text, "file-")
    f = server.state.add_file(spec.get("filename") or f"{spec['name']}.jsonl", spec.get("purpose", "fine-tune"), path)
    if spec.get("refuse_download"):
        server.faults.add("no_download", "GET", f"/files/{f.id}/content", times=FOREVER)
    return f.id


def _job(state, spec: dict, files: dict, index: int, named: dict) -> str:
    status = spec.get("status", "succeeded")
    if status not in STATUSES:
        raise InvalidInput(f"a seeded job's status must be one of {', '.join(STATUSES)}, not {status!r}", "")
    train = files[spec["training_file"]]
    created = float(spec.get("created_at", 1_700_000_000)) + index
    job = Job(id=new_id("ftjob-"), model=_model(spec, named), training_file=train,
              training_path=state.files[train].path, organization_id=state.organization, created_at=created,
              validation_file=files.get(spec.get("validation_file")), suffix=spec.get("suffix"),
              seed=spec.get("seed", 42), metadata=spec.get("metadata"), method=spec.get("method", "supervised"),
              requested=dict(spec.get("hyperparameters", {"n_epochs": 3})))
    job.resolved = {"n_epochs": 3, "batch_size": 1, "learning_rate_multiplier": 1.8, **job.requested}
    _history(job, spec, created, status)
    state.jobs[job.id] = job
    if job.fine_tuned_model:  # it answers chat requests, as a live ft: model does
        state.add_model(job.fine_tuned_model, job.id)
    if spec.get("name"):
        named[spec["name"]] = job.fine_tuned_model
    return job.id


def _model(spec: dict, named: dict) -> str:
    """The model a seeded job trains: its "model", or the ft: model of the earlier job it is "on"."""
    if "on" not in spec:
        return spec.get("model", "gpt-4o-mini-2024-07-18")
    if not named.get(spec["on"]):
        raise InvalidInput(f"a seeded job is on {spec['on']!r}, which names no earlier succeeded job",
                           "Name the earlier job with \"name\" and let it succeed.")
    return named[spec["on"]]


def _history(job: Job, spec: dict, created: float, status: str) -> None:
    """Every event from validation to the end, step metrics and checkpoints among them."""
    n = max(2, int(spec.get("events", 20)))
    job.emit(f"Validating training file: {job.training_file}", created)
    steps = n - 2
    for step in range(1, steps + 1):
        at = created + 10 + step
        data = {"step": step, "train_loss": 1 / step, "train_mean_token_accuracy": 0.5, "total_steps": steps}
        if job.method == "dpo":  # a preference job's reward figures beside its loss
            data |= {k: v for k, v in dpo_figures(step, steps).items() if k not in data}
        job.emit(f"Step {step}/{steps}: training loss={1 / step:.4f}", at, type="metrics", data=data)
    end = created + 20 + steps
    for k in range(min(int(spec.get("checkpoints", 3 if status == "succeeded" else 0)), steps)):
        step = steps - k
        job.add_checkpoint(step, f"ft:{base_of(job.model)}:standin:{job.suffix or ''}:{job.id[-8:]}:ckpt-step-{step}",
                           {"train_loss": 1 / step}, created + 10 + step)
    job.checkpoints.sort(key=lambda c: c["step_number"])
    if status == "succeeded":
        job.fine_tuned_model = f"ft:{base_of(job.model)}:standin:{job.suffix or ''}:{job.id[-8:]}"
        job.trained_tokens = spec.get("trained_tokens", 1000 * steps)
    error = spec.get("error") or ({"code": "invalid_training_file", "message": "The training file is invalid.",
                                   "param": "training_file"} if status == "failed" else None)
    job.emit(f"The job has {'successfully completed' if status == 'succeeded' else status}", end,
             level="error" if status == "failed" else "info")
    job.finish(status, end, error)
