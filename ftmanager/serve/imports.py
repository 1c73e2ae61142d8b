"""Where an API job meets ftm: its files imported as datasets, its run submitted, its worker reaped."""

from __future__ import annotations

from .. import jobs
from ..ledger import ledger


def submit(job, served, files: dict) -> str:
    """Import the job's files as datasets and start a local run; returns the run id."""
    from ftmanager import add_dataset  # the public name: it outlives module moves

    train = add_dataset(job.training_path, name=_stem(files[job.training_file].filename), model=served.local)[0]
    valid = None
    if job.validation_file:
        valid = add_dataset(job.validation_path, name=_stem(files[job.validation_file].filename),
                            model=served.local)[0]["id"]
    run = jobs.submit(train["id"], "local", served.local, hyperparameters=job.requested, suffix=job.suffix,
                      seed=job.seed, validation=valid, options=served.options)
    ledger().add_event(run["id"], f"created by ftm serve: job {job.id} on {job.model}",
                       data={"job_id": job.id, "requested_model": job.model})
    return run["id"]


def _stem(filename: str) -> str:
    return filename.rsplit("/", 1)[-1].removesuffix(".jsonl") or "upload"


def reap_workers(run_ids) -> None:
    """Collect the exit status of workers this process launched, so none lingers as <defunct>."""
    from .. import registry

    backend = registry.get("local")
    for run_id in run_ids:
        backend.reap(run_id)
