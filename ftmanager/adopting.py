"""`ftm import`: adopt the fine-tuning jobs a provider account already has as runs in the ledger.

Each job the ledger does not hold becomes a run recorded as if ftm had followed it from the
start (through the backend's jobs() / caught_up(), the optional part of the Backend contract),
its training and validation files ftm datasets: downloaded where the provider gives them back,
else found among the user's local copies (--data) by the provider's filename and exact byte
count, confirmed by parsing. A job is adopted in one transaction that first checks nothing
stands for it yet, so a second import, a killed one run again, or two at once add no duplicate.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

from . import paths, registry
from .errors import FtmError, InvalidInput, NotFound
from .facts import TERMINAL, iso
from .ledger import ledger, now
from .tempfiles import clear_stale, owned, shown

RERUNNABLE = (None, "supervised", "sft", "dpo")  # methods `ftm rerun` can send elsewhere (sft: Together's word)
RUN_ID_TAIL = re.compile(r"(?:^|-)(run-[0-9a-f]{8})$")  # ftm's run id, as it ends a job's suffix
TMP_PREFIX = ".ftm-import-"


@dataclass
class Summary:
    """What one import did (or, with dry_run, would do)."""

    backend: str
    account: str
    adopted: list[dict] = field(default_factory=list)  # {run_id, job_id, status, method}
    already: list[str] = field(default_factory=list)  # job ids a run already stands for
    would_adopt: list[dict] = field(default_factory=list)  # dry run: {job_id, status, method, created_at}
    downloaded: list[str] = field(default_factory=list)  # file ids fetched from the provider
    matched: list[dict] = field(default_factory=list)  # {file_id, path}
    missing: list[dict] = field(default_factory=list)  # {run_id, part, file_id, filename, bytes}
    completed: list[str] = field(default_factory=list)  # earlier imports whose data --data attached
    not_rerunnable: dict = field(default_factory=dict)  # method -> run ids

    def as_dict(self) -> dict:
        return asdict(self)


def import_history(backend: str, data=(), job: str | None = None, since: float | None = None,
                   dry_run: bool = False, page: int = 100) -> Summary:
    """Adopt every job of backend's account the ledger does not hold (only job, or those created
    since `since`); data: local files or folders to find data the provider will not return."""
    impl = registry.get(backend)
    if not dry_run:
        ledger().writable()
        clear_stale(paths.datasets_dir(), TMP_PREFIX)  # downloads a killed import left half-written
    local = LocalCopies(data)
    summary = Summary(backend, impl.account)
    for listed in _listed(impl, job, page):
        if since is not None and listed.created_at is not None and listed.created_at < since:
            break  # newest first: the rest are older still
        _one(impl, listed, local, summary, dry_run)
    if not dry_run and data:
        _complete_earlier(impl, local, summary)
    if not dry_run:
        _link_chains()
    return summary


def _listed(impl, job: str | None, page: int):
    """The jobs to look at: one by id, or every job of the account (newest first)."""
    if not job:
        return impl.jobs(page)
    try:
        return [impl.provider_job(job)]
    except NotFound:
        raise NotFound(f"{impl.name} has no fine-tuning job {job!r} in account {impl.account}",
                       f"Check the id: `ftm import {impl.name} --dry-run` lists the account's jobs.") from None


def _ftm_ids(listed) -> list[str]:
    """The run ids a job says ftm started it as: its ftm_run_id metadata, or a run-id suffix."""
    tail = RUN_ID_TAIL.search(listed.request.suffix or "")
    ids = [(listed.request.metadata or {}).get("ftm_run_id"), tail.group(1) if tail else None]
    return [i for i in ids if isinstance(i, str) and i]


def _one(impl, listed, local: "LocalCopies", summary: Summary, dry_run: bool) -> None:
    if ledger().held_run(impl.name, impl.account, listed.job_id, _ftm_ids(listed)):
        summary.already.append(listed.job_id)
        return
    if dry_run:
        summary.would_adopt.append({"job_id": listed.job_id, "status": listed.status, "method": listed.request.method,
                                    "created_at": iso(listed.created_at) if listed.created_at else None})
        return
    job = impl.caught_up(listed) if listed.progress is None else listed
    run_id = _new_run_id()
    train, missing = _dataset(impl, job.request.training_file, "training", local, summary)
    valid, missing_v = _dataset(impl, job.request.validation_file, "validation", local, summary)
    gaps = [m for m in (missing, missing_v) if m]
    run = ledger().adopt(_row(impl, job, run_id, train, valid, gaps), job.progress, _ftm_ids(job))
    if run is None:  # another import adopted it meanwhile
        summary.already.append(job.job_id)
        return
    _adopted(summary, run, job, gaps)


def _adopted(summary: Summary, run: dict, job, gaps: list[dict]) -> None:
    summary.adopted.append({"run_id": run["id"], "job_id": job.job_id, "status": run["status"], "method": run["method"]})
    summary.missing += [{"run_id": run["id"], **g, "filename": readable(g["filename"])} for g in gaps]
    if run["method"] not in RERUNNABLE:
        summary.not_rerunnable.setdefault(run["method"], []).append(run["id"])


def _new_run_id() -> str:
    import secrets

    return f"run-{secrets.token_hex(4)}"


def _row(impl, job, run_id: str, train: dict | None, valid: dict | None, gaps: list[dict]) -> dict:
    """The run's row: the job's request and everything its progress says, with real times."""
    p, r = job.progress, job.request
    created = iso(job.created_at) if job.created_at else now()
    row = {"id": run_id, "backend": impl.name, "base_model": r.base_model, "method": r.method,
           "dataset_id": train["id"] if train else None, "validation_dataset_id": valid["id"] if valid else None,
           "hyperparameters": r.hyperparameters or {}, "resolved_hyperparameters": p.hyperparameters,
           "options": r.options or {}, "suffix": r.suffix, "seed": r.seed, "metadata": r.metadata or {},
           "status": p.status, "provider_job_id": job.job_id, "result_model": p.result_model,
           "result_path": p.result_path, "trained_tokens": p.trained_tokens, "total_steps": p.total_steps,
           "actual_cost": p.actual_cost, "cursor": p.cursor, "created_at": created,
           "started_at": created if p.status not in ("created", "validating_files", "queued") else None,
           "finished_at": iso(p.finished_at) if p.status in TERMINAL and p.finished_at else None,
           "imported_at": now(), "imported_from": impl.account, "missing_data": gaps or None}
    if p.error:
        row.update(error_code=p.error.get("code"), error_message=p.error.get("message"), error_param=p.error.get("param"))
    return row


# --- data ---------------------------------------------------------------------------------


def _dataset(impl, file_id: str | None, part: str, local: "LocalCopies", summary: Summary):
    """(the ftm dataset of a provider's file, None) or (None, what is missing) for file_id."""
    if not file_id:
        return None, None
    known = ledger().uploaded_as(impl.name, impl.account, file_id)
    if known:  # stored already (an earlier job of this import, or a run ftm started there)
        return known, None
    remote = impl.remote_file(file_id)
    name = readable(remote.filename) if remote and remote.filename else None
    row = _downloaded(impl, file_id, name)
    if row:
        summary.downloaded.append(file_id)
        return _uploaded(impl, row, file_id), None
    found = local.find(file_id, remote.filename, remote.bytes) if remote else None
    if found:
        row = matched(found, file_id, name, remote.bytes, f"{impl.name}:{file_id} (matched {shown(found)})")
        summary.matched.append({"file_id": file_id, "path": shown(found)})
        return _uploaded(impl, row, file_id), None
    # the name as the provider has it (not UTF-8 perhaps): a later --data matches on it
    return None, {"part": part, "file_id": file_id, "filename": remote.filename if remote else None,
                  "bytes": remote.bytes if remote else None}


def _uploaded(impl, row: dict, file_id: str) -> dict:
    """row, recorded as uploaded to this account as file_id: later jobs and re-runs there reuse it."""
    ledger().put_upload(row["id"], impl.name, impl.account, file_id, row["bytes"])
    return row


def _downloaded(impl, file_id: str, name: str | None) -> dict | None:
    """The provider's copy of file_id stored as a dataset; None where it will not give it back."""
    folder = paths.datasets_dir()
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f"{owned(TMP_PREFIX)}{_new_run_id()[4:]}.jsonl"  # this thread's own: imports may share a pid
    try:
        if not impl.fetch_file(file_id, tmp):
            return None
        return store(tmp, name, f"{impl.name}:{file_id}")
    finally:
        tmp.unlink(missing_ok=True)


def store(path: Path, name: str | None, source: str) -> dict:
    """path parsed, validated and stored content-addressed as a dataset named name."""
    from . import data
    from .catalog import _record

    stem = (name or Path(path).name).rsplit(".", 1)[0] or "imported"
    saved = data.save(Path(path), paths.datasets_dir(), check=False)
    return _record(saved, stem, source)[0]


def readable(name: str) -> str:
    """A provider's filename as text that prints anywhere (bytes that were not UTF-8 escaped)."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "replace") if name else name


class LocalCopies:
    """The user's local data files (--data: files, or folders searched recursively)."""

    def __init__(self, roots=()):
        self.files: list[Path] = []
        for root in map(Path, roots):
            if not root.exists():
                raise InvalidInput(f"--data {shown(root)}: no such file or folder", "Give files or folders that exist.")
            self.files += [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())

    def find(self, file_id: str, filename: str | None, nbytes: int | None) -> Path | None:
        """The one local file with the provider's filename and exact size, confirmed by parsing."""
        fits = [p for p in self.files if filename and p.name == filename and p.stat().st_size == nbytes]
        if len({_sha256(p) for p in fits}) > 1:
            a, b = fits[:2]
            raise InvalidInput(f"two local files fit {file_id} ({readable(filename)}, {nbytes} bytes): "
                               f"{shown(a)} and {shown(b)}", "Point --data at the right one only.")
        return fits[0] if fits else None


def matched(path: Path, file_id: str, filename: str, nbytes: int, source: str) -> dict:
    """A local copy that fits by name and size, stored once parsing confirms it is data."""
    try:
        return store(path, filename, source)
    except FtmError as err:
        raise InvalidInput(f"{shown(path)} has {file_id}'s name and size ({nbytes} bytes) but is not valid data "
                           f"({err.what})", "Point --data at the file that was uploaded.") from None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# --- completing earlier imports -----------------------------------------------------------


def _complete_earlier(impl, local: LocalCopies, summary: Summary) -> None:
    """Attach --data files to this account's imported runs still missing their data."""
    for run in ledger().imported_missing_data(impl.name, impl.account):
        still, fields = [], {}
        for gap in run["missing_data"]:
            found = local.find(gap["file_id"], gap.get("filename"), gap.get("bytes")) if gap.get("filename") else None
            if not found:
                still.append(gap)
                continue
            row = matched(found, gap["file_id"], readable(gap["filename"]), gap["bytes"],
                          f"{impl.name}:{gap['file_id']} (matched {shown(found)})")
            summary.matched.append({"file_id": gap["file_id"], "path": shown(found)})
            fields["dataset_id" if gap["part"] == "training" else "validation_dataset_id"] = row["id"]
        if fields:
            ledger().update_run(run["id"], **fields, missing_data=still or None)
            summary.completed.append(run["id"])


# --- chains ---------------------------------------------------------------------------------


def _link_chains() -> None:
    """An imported run on another run's model (OpenAI's DPO on an SFT job's ft: model) is a chain
    link, as a submitted one is: base_run_id names that run, whichever of the two came in first
    (an account lists its newest jobs first, so the DPO job usually does)."""
    owner = {}
    for m in reversed(ledger().models()):  # where two runs gave one name, the newest, as submit takes it
        if m["kind"] == "model":
            owner[m["model_id"]] = m["run_id"]
    for run in ledger().runs():
        up = owner.get(run["base_model"])
        if run.get("imported_at") and not run.get("base_run_id") and up and up != run["id"]:
            ledger().update_run(run["id"], base_run_id=up)


# --- re-running an imported run -------------------------------------------------------------


def check_rerun(run: dict) -> None:
    """Refuse, in one line, to re-run an imported run whose data or method ftm does not have."""
    missing = run.get("missing_data") or []
    train = next((g for g in missing if g["part"] == "training"), None) or (missing[0] if missing else None)
    if train:
        raise InvalidInput(
            f"run {run['id']}'s {train['part']} data never came back from {run['backend']}: file {train['file_id']}"
            f" ({readable(train.get('filename')) or 'name unknown'}, {train.get('bytes') or '?'} bytes)",
            f"Find that file and run `ftm import {run['backend']} --data PATH` to attach it.")
    if run.get("method") not in RERUNNABLE:
        raise InvalidInput(f"run {run['id']} was trained with method {run['method']} on {run['backend']}, "
                           "which ftm cannot re-run yet", "Re-run a supervised run instead.")
