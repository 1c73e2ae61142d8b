"""What `ftm serve` keeps across restarts: its files and jobs, in the ledger (m004_serve, m008).

The front works on State's records in memory; LedgerState writes each file and job request
through to the ledger and reads them all back at start-up, so a client's file and job ids
outlive the server. A job's row keeps what was asked and its run id; its status is its run's
(LocalService reads it on every look), except for a job refused before it had a run, whose
row keeps the refusal. The bytes of files live under FTM_HOME/serve.
"""

from __future__ import annotations

from pathlib import Path

from ..front.state import File, Job, State
from ..facts import epoch, iso
from ..hyperparameters import METHODS, SUPERVISED
from ..ledger import ledger

ORGANIZATION = "org-ftm"  # who owns what this server trains (owned_by, organization_id)
JOB_FIELDS = ("model", "training_file", "validation_file", "suffix", "seed", "metadata")


def method_of(requested: dict) -> str:
    """A job's method from what it asked: a method's own settings are asked only by its jobs
    (each recorded, "auto" included), so the row needs no column of its own."""
    return next((m for m, own in METHODS.items() if own and set(own) <= set(requested)), SUPERVISED)


class LedgerState(State):
    """State whose files and jobs are recorded in the ledger and read back at start-up."""

    def __init__(self, data_dir: Path):
        super().__init__(data_dir, organization=ORGANIZATION)
        self.run_ids: dict[str, str] = {}  # job id -> its run, once the run exists
        for row in ledger().api_files():
            if Path(row["path"]).exists():
                self.files[row["id"]] = File(row["id"], row["filename"], row["purpose"], Path(row["path"]),
                                             row["bytes"], int(epoch(row["created_at"])), bool(row["base64"]))
        for row in ledger().api_jobs():
            self.jobs[row["id"]] = self._job(row)

    def _job(self, row: dict) -> Job:
        paths = {f: self.files[row[f]].path if row[f] in self.files else None
                 for f in ("training_file", "validation_file")}
        job = Job(id=row["id"], training_path=paths["training_file"], validation_path=paths["validation_file"],
                  organization_id=self.organization, created_at=epoch(row["created_at"]),
                  requested=row["hyperparameters"] or {}, **{f: row[f] for f in JOB_FIELDS})
        job.method = method_of(job.requested)
        if row["run_id"]:
            self.run_ids[job.id] = row["run_id"]
        if row["result_file"]:
            job.result_files = [row["result_file"]]
        if row["error"] and not row["run_id"]:  # refused before it had a run: no run to read
            job.finish("failed", epoch(row["finished_at"]), row["error"])
        return job

    def add_file(self, filename: str, purpose: str, path: Path, base64: bool = False) -> File:
        f = super().add_file(filename, purpose, path, base64)
        ledger().add_api_file({"id": f.id, "filename": f.filename, "purpose": f.purpose, "path": str(f.path),
                               "bytes": f.bytes, "base64": int(f.base64), "created_at": iso(f.created_at)})
        return f

    def delete_file(self, file_id: str) -> None:
        super().delete_file(file_id)
        ledger().delete_api_file(file_id)

    def save_job(self, job: Job, **fields) -> None:
        """Record a new job, or the fields of it that changed (run_id, result_file, a refusal)."""
        if not fields:
            fields = {f: getattr(job, f) for f in JOB_FIELDS}
            fields.update(hyperparameters=job.requested, created_at=iso(job.created_at))
        ledger().put_api_job({"id": job.id, **fields})
