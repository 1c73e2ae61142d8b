"""What `ftm serve` asks of the ledger, each call run on the runner's one ledger thread.

These are plain functions over ftmanager.jobs and the store, so the thread rule (sqlite3
connections stay on the thread that made them) is kept in one place: runner._call.
"""

from __future__ import annotations

import re

from .. import jobs
from ..errors import InvalidInput, NotFound
from ..ledger import ledger

SERVED = "served by ftm serve as "  # the ledger event that names a run's ft: model


def submit(job, served, names: list[str]) -> str:
    """Import the job's files as datasets and start a local run; returns the run id."""
    from ftmanager import add_dataset  # the public name: it outlives module moves

    train = add_dataset(job.training_path, name=_stem(names[0]), model=served.local)[0]
    valid = None
    if job.validation_path:
        valid = add_dataset(job.validation_path, name=_stem(names[1]), model=served.local)[0]["id"]
    run = jobs.submit(train["id"], "local", served.local, hyperparameters=job.requested, suffix=job.suffix,
                      seed=job.seed, validation=valid, options=served.options)
    ledger().add_event(run["id"], f"created by ftm serve: job {job.id} on {job.model}",
                       data={"job_id": job.id, "requested_model": job.model})
    return run["id"]


def _stem(filename: str) -> str:
    return filename.rsplit("/", 1)[-1].removesuffix(".jsonl") or "upload"


def poll(run_id: str) -> dict:
    """The run after one poll of its backend, with events, metrics and checkpoints."""
    jobs.refresh(run_id)
    return jobs.show(run_id)


def cancel(run_id: str) -> None:
    jobs.cancel(run_id)


def pause(run_id: str) -> None:
    jobs.cancel(run_id)  # the local worker saves a checkpoint as it stops, which resume starts from
    ledger().add_event(run_id, "paused by ftm serve: stopped with a checkpoint until resumed")


def resume(run_id: str) -> None:
    jobs.resume(run_id)


def mark_served(run_id: str, name: str, job_id: str) -> None:
    """Name the run's model in the ledger, so a restarted server serves it again."""
    ledger().add_event(run_id, SERVED + name, data={"served_model": name, "job_id": job_id})


def served_models() -> list[tuple[str, str]]:
    """(ft: name, job id) of every succeeded local run this server (or an earlier one) named."""
    out = []
    for run in ledger().runs(backend="local", status="succeeded"):
        for e in ledger().events(run["id"]):
            name = (e["data"] or {}).get("served_model")
            if name:
                out.append((name, e["data"].get("job_id")))
    return out


def adapter_of(run_id: str, model: str) -> tuple[str, str]:
    """(base model directory, adapter directory) of a served ft: model or checkpoint."""
    from ftm_backends.local.model import base_of

    run = ledger().run(run_id)
    step = model.split(":ckpt-step-")[1] if ":ckpt-step-" in model else None
    if step is None and not run["result_path"]:
        raise InvalidInput(f"run {run_id} is {run['status']} and has no model yet", "Wait for it.")
    path = run["result_path"]
    if step is not None:
        found = [c["path"] for c in ledger().checkpoints(run_id) if str(c["step"]) == step]
        if not found:
            raise NotFound(f"run {run_id} has no checkpoint at step {step}", "See `ftm show`.")
        path = found[0]
    return base_of(run["result_path"], run["base_model"]), path


def local_dir(local: str) -> str:
    """A from_pretrained() directory or hub id for a table's `local` model."""
    from ftm_backends.local.model import resolve

    return resolve(local)


_STEP = re.compile(r"^Step (\d+)/(\d+):")


def step_metrics(message: str, shown: dict) -> dict | None:
    """The metrics event data for a "Step N/M: ..." message, from the run's metrics rows."""
    match = _STEP.match(message)
    if not match:
        return None
    step, total = int(match[1]), int(match[2])
    row = next((m for m in shown["metrics"] if m["step"] == step), None)
    if row is None:
        return None
    data = {k: v for k, v in row.items() if k != "run_id" and v is not None}
    if "train_accuracy" in data:
        data["train_mean_token_accuracy"] = data.pop("train_accuracy")
    return {**data, "total_steps": total}


def results_csv(metrics: list[dict]) -> str:
    """OpenAI's step_metrics.csv: step, train_loss, train_accuracy, valid_loss, valid accuracy."""
    cols = ("step", "train_loss", "train_accuracy", "valid_loss", "valid_mean_token_accuracy")
    rows = [",".join(cols)]
    for m in metrics:
        rows.append(",".join("" if m.get(c) is None else str(m[c]) for c in cols))
    return "\n".join(rows) + "\n"


def close_ledger() -> None:
    """Close this thread's ledger connection (no other thread may)."""
    from .. import ledger as ledgers, paths

    conn = ledgers._ledgers.pop(paths.ledger_path(), None)  # the store keeps one per process
    if conn is not None:
        conn.close()
