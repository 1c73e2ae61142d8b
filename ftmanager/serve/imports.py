"""Where an API job meets ftm: its files imported as datasets, its run submitted, its worker reaped."""

from __future__ import annotations

from .. import jobs
from ..ledger import ledger


def submit(job, served, files: dict, upstream: dict | None = None) -> str:
    """Import the job's files as datasets and start a local run; returns the run id. upstream: the
    ledger row of the ft: model the job names, when it names one: the run is a chain link on top
    of that run (as `ftm submit -m RUN_ID`), recorded as such and trained from its weights."""
    from ftmanager import add_dataset  # the public name: it outlives module moves

    train = add_dataset(job.training_path, name=_stem(files[job.training_file].filename), model=served.local)[0]
    valid = None
    if job.validation_file:
        valid = add_dataset(job.validation_path, name=_stem(files[job.validation_file].filename),
                            model=served.local)[0]["id"]
    hp = {**job.requested, "method": job.method}
    base = upstream["run_id"] if upstream else served.local
    run = jobs.submit(train["id"], "local", base, hyperparameters=hp, suffix=job.suffix,
                      seed=job.seed, validation=valid, options=served.options)
    ledger().add_event(run["id"], f"created by ftm serve: job {job.id} on {job.model}",
                       data={"job_id": job.id, "requested_model": job.model})
    return run["id"]


def file_problem(job) -> dict | None:
    """OpenAI's error for the job's first file that is not valid for its method, line by line as
    OpenAI checks it (ftm's own, stricter checks follow when the file is imported)."""
    from ..front.openai.file_checks import check_file

    for param, path, label in (("training_file", job.training_path, "Training"),
                               ("validation_file", job.validation_path, "Validation")):
        if path is not None:
            error = check_file(path, param, label, min_examples=1, method=job.method).error
            if error:
                return error
    return None


def _stem(filename: str) -> str:
    return filename.rsplit("/", 1)[-1].removesuffix(".jsonl") or "upload"


def reap_workers(run_ids) -> None:
    """Collect the exit status of workers this process launched, so none lingers as <defunct>."""
    from .. import registry

    backend = registry.get("local")
    for run_id in run_ids:
        backend.reap(run_id)
