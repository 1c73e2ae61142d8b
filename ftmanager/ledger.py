"""The ledger: every dataset, upload, run, event, metric and checkpoint, in one SQLite file.

All SQL about ftm's tables is here (how the file is opened, checked and migrated is
ledger_file's). Reads use sqlite3 directly (so that `ftm runs` starts fast); writes go through
sqlite-utils inside BEGIN IMMEDIATE transactions. Paths inside FTM_HOME are stored relative to
it and read back absolute, so a copied FTM_HOME works from its new place.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from pathlib import Path

from . import paths
from .backend import Progress
from .facts import CREATED, QUEUED, TERMINAL, VALIDATING, iso
from .errors import InvalidInput, NotFound
from .ledger_file import LedgerFile, busy_timeout  # noqa: F401  (busy_timeout: a public name here)
from .ledger_metrics import MetricReads, upsert_metrics

RUN_JSON_FIELDS = ("split", "hyperparameters", "resolved_hyperparameters", "options", "cursor", "start_claim",
                   "metadata", "missing_data")


def now() -> str:
    """The current UTC time as the ledger writes it."""
    return iso()


_ledgers: dict[Path, "Ledger"] = {}
_opening = threading.Lock()


def ledger() -> "Ledger":
    """The ledger of the current FTM_HOME, shared by this process's threads (a connection each)."""
    path = paths.ledger_path()
    with _opening:
        if path not in _ledgers:
            _ledgers[path] = Ledger(path)
        return _ledgers[path]


def close_ledgers() -> None:
    """Close every ledger this process opened, on every thread; a later ledger() reopens."""
    with _opening:
        books = list(_ledgers.values())
        _ledgers.clear()
    for book in books:
        book.close()


# --- served API: the other names a model answers to, as rows of Ledger.models() ------------
API_JOB_JSON = ("metadata", "hyperparameters", "error")
ALIAS_ROWS = """
    SELECT j.fine_tuned_model, 'alias', r.id, r.backend, r.base_model, r.dataset_id, r.result_path,
           NULL, r.finished_at
    FROM api_jobs j JOIN runs r ON r.id = j.run_id
    WHERE r.status = 'succeeded' AND j.fine_tuned_model IS NOT NULL
    UNION ALL
    SELECT j.fine_tuned_model || ':ckpt-step-' || c.step, 'alias', r.id, r.backend, r.base_model,
           r.dataset_id, c.path, c.step, c.created_at
    FROM api_jobs j JOIN runs r ON r.id = j.run_id JOIN checkpoints c ON c.run_id = r.id
    WHERE j.fine_tuned_model IS NOT NULL
    UNION ALL
    SELECT p.result_model, 'alias', r.id, r.backend, r.base_model, r.dataset_id, r.result_path,
           NULL, r.finished_at
    FROM runs r JOIN runs p ON p.id = r.parent_run_id
    WHERE r.status = 'succeeded' AND r.result_path IS NOT NULL AND p.result_model IS NOT NULL
      AND p.result_path IS NULL AND p.result_model NOT IN (SELECT name FROM model_aliases)
    UNION ALL
    SELECT a.name, 'alias', r.id, r.backend, r.base_model, r.dataset_id, r.result_path, NULL, r.finished_at
    FROM model_aliases a JOIN runs r ON r.id = a.run_id WHERE r.status = 'succeeded'"""

# Columns that hold a path: kept relative to FTM_HOME when inside it, read back absolute.
PATH_COLUMNS = ("path", "source", "result_path")


class Ledger(MetricReads):
    """The ledger at path (default $FTM_HOME/ftm.db), opened as ledger_file says. Any thread
    may call it."""

    def __init__(self, path: Path | None = None):
        self.path = Path(path) if path else paths.ledger_path()
        self.home = self.path.parent  # relative paths in the ledger lie under its own folder
        self.file = LedgerFile(self.path)
        self.file.open()

    # --- plumbing -----------------------------------------------------------------------

    @property
    def conn(self) -> sqlite3.Connection:
        """This thread's connection."""
        return self.file.conn()

    @property
    def db(self):
        """This thread's sqlite_utils Database over its connection, imported on first write."""
        return self.file.utils()

    def _errors(self):
        return self.file.errors()

    def writable(self) -> "Ledger":
        """This ledger, or a one-line LedgerError where it can only be read (call before writing
        files beside it, so that a read-only FTM_HOME refuses before anything is half-done)."""
        self.file.check_writable()
        return self

    def write(self):
        """A BEGIN IMMEDIATE transaction: it takes the write lock before reading."""
        return self.file.transaction()

    def _all(self, sql: str, params=()) -> list[dict]:
        with self.file.errors():
            return [self._restored(dict(row)) for row in self.conn.execute(sql, params)]

    def _one(self, sql: str, params=()) -> dict | None:
        rows = self._all(sql, params)
        return rows[0] if rows else None

    def _stored(self, row: dict) -> dict:
        """row with its paths relative to the ledger's folder where they lie inside it."""
        return {k: paths.to_ledger(v, self.home) if k in PATH_COLUMNS else v for k, v in row.items()}

    def _restored(self, row: dict) -> dict:
        for key in PATH_COLUMNS:
            if row.get(key):
                row[key] = paths.from_ledger(row[key], self.home)
        return row

    def close(self) -> None:
        """Close every thread's connection to this ledger."""
        self.file.close()

    # --- datasets -----------------------------------------------------------------------

    def add_dataset(self, row: dict) -> tuple[dict, bool]:
        """Record a dataset; return (its row, whether it was new)."""
        with self.write() as db:
            existing = self._one("SELECT * FROM datasets WHERE id = ?", [row["id"]])
            if existing:
                return existing, False
            db["datasets"].insert({**self._stored(row), "created_at": now()})
        return self.dataset(row["id"]), True

    def dataset(self, ref: str) -> dict:
        """A dataset by id, unique id prefix, or name (the newest of that name)."""
        row = self._one("SELECT * FROM datasets WHERE id = ?", [ref])
        row = row or self._one(
            "SELECT * FROM datasets WHERE name = ? ORDER BY created_at DESC, rowid DESC LIMIT 1", [ref]
        )
        if row:
            return row
        rows = self._all("SELECT * FROM datasets WHERE id LIKE ? LIMIT 5", [_prefix(ref)])
        return _single(rows, ref, "dataset", "ftm datasets list")

    def has_dataset(self, dataset_id: str) -> bool:
        return self._one("SELECT 1 AS x FROM datasets WHERE id = ?", [dataset_id]) is not None

    def datasets(self) -> list[dict]:
        return self._all("SELECT * FROM datasets ORDER BY created_at DESC, rowid DESC")

    # --- dataset names (the data layer's) -----------------------------------------------

    def rename_dataset(self, dataset_id: str, name: str) -> dict:
        """Give a stored dataset another name (adding the same content under a new name)."""
        with self.write() as db:
            db.execute("UPDATE datasets SET name = ? WHERE id = ?", [name, dataset_id])
        return self.dataset(dataset_id)

    # --- uploads ------------------------------------------------------------------------

    def upload(self, dataset_id: str, backend: str, account: str) -> dict | None:
        return self._one(
            "SELECT * FROM uploads WHERE dataset_id = ? AND backend = ? AND account = ?",
            [dataset_id, backend, account],
        )

    def put_upload(self, dataset_id: str, backend: str, account: str, file_id: str, nbytes: int):
        row = dict(dataset_id=dataset_id, backend=backend, account=account)
        with self.write() as db:
            db.execute(
                "DELETE FROM uploads WHERE dataset_id = ? AND backend = ? AND account = ?",
                [dataset_id, backend, account],
            )
            db["uploads"].insert({**row, "file_id": file_id, "bytes": nbytes, "created_at": now()})

    def forget_upload(self, dataset_id: str, backend: str, account: str) -> None:
        with self.write() as db:
            db.execute(
                "DELETE FROM uploads WHERE dataset_id = ? AND backend = ? AND account = ?",
                [dataset_id, backend, account],
            )

    def uploaded_as(self, backend: str, account: str, file_id: str) -> dict | None:
        """The dataset whose upload to this account has the provider's file id file_id."""
        return self._one("SELECT d.* FROM uploads u JOIN datasets d ON d.id = u.dataset_id"
                         " WHERE u.backend = ? AND u.account = ? AND u.file_id = ?", [backend, account, file_id])

    def uploads_of(self, dataset_id: str) -> list[dict]:
        return self._all("SELECT * FROM uploads WHERE dataset_id = ? ORDER BY id", [dataset_id])

    # --- runs ---------------------------------------------------------------------------

    def create_run(self, row: dict) -> dict:
        stamp = now()
        with self.write() as db:
            db["runs"].insert({**_dump(self._stored(row)), "created_at": stamp, "updated_at": stamp})
        return self.run(row["id"])

    def update_run(self, run_id: str, **fields) -> dict:
        with self.write() as db:
            db["runs"].update(run_id, {**_dump(self._stored(fields)), "updated_at": now()})
        return self.run(run_id)

    def claim_start(self, run_id: str, claim: dict, is_live) -> bool:
        """Take the right to call a backend's start() for a run that has no job yet.

        False when the run has a job, has left `created`, or another process holds a claim
        that is_live(claim) says is alive: checked and taken under one write lock, so two
        `ftm sync`s never both start it.
        """
        with self.write() as db:
            row = self._one("SELECT status, provider_job_id, start_claim FROM runs WHERE id = ?", [run_id])
            held = json.loads(row["start_claim"]) if row["start_claim"] else None
            if row["provider_job_id"] or row["status"] != CREATED or (held and is_live(held)):
                return False
            db["runs"].update(run_id, {"start_claim": json.dumps(claim), "updated_at": now()})
        return True

    def run(self, ref: str) -> dict:
        """A run by our id, a unique prefix of it, or the provider's job id."""
        row = self._one("SELECT * FROM runs WHERE id = ?", [ref])
        row = row or self._one("SELECT * FROM runs WHERE provider_job_id = ?", [ref])
        if not row:
            rows = self._all("SELECT * FROM runs WHERE id LIKE ? LIMIT 5", [_prefix(ref)])
            row = _single(rows, ref, "run", "ftm runs")
        return _load(row)

    def runs(self, backend=None, status=None, dataset_id=None, limit: int | None = None) -> list[dict]:
        """Runs, newest first, filtered by any of backend, status and dataset."""
        where, params = [], []
        for column, value in (("backend", backend), ("status", status), ("dataset_id", dataset_id)):
            if value:
                where.append(f"{column} = ?")
                params.append(value)
        sql = "SELECT * FROM runs"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY created_at DESC, rowid DESC"
        if limit and limit > 0:
            sql += f" LIMIT {min(int(limit), 2**63 - 1)}"
        return [_load(row) for row in self._all(sql, params)]

    def unfinished_runs(self) -> list[dict]:
        marks = ",".join("?" * len(TERMINAL))
        sql = f"SELECT * FROM runs WHERE status NOT IN ({marks}) ORDER BY created_at"
        return [_load(row) for row in self._all(sql, sorted(TERMINAL))]

    def events(self, run_id: str) -> list[dict]:
        rows = self._all("SELECT * FROM events WHERE run_id = ? ORDER BY created_at, id", [run_id])
        return [{**r, "data": json.loads(r["data"]) if r["data"] else None} for r in rows]

    def checkpoints(self, run_id: str) -> list[dict]:
        rows = self._all("SELECT * FROM checkpoints WHERE run_id = ? ORDER BY step", [run_id])
        return [{**r, "metrics": json.loads(r["metrics"]) if r["metrics"] else {}} for r in rows]

    def run_with_model(self, model_id: str) -> dict | None:
        """The run whose result is model_id (where two runs gave one name, the one that finished
        last, as models() lists it first), or None."""
        row = self._one("SELECT id FROM runs WHERE result_model = ? ORDER BY finished_at DESC LIMIT 1", [model_id])
        return self.run(row["id"]) if row else None

    def models(self) -> list[dict]:
        """Every model the ledger knows: results of runs, their checkpoints, and the other names
        (kind "alias") each answers to: the ft: names `ftm serve` gave its jobs, and a re-run's
        parent's model name when the re-run has the weights its parent never gave (see api_aliases)."""
        return self._all(
            """SELECT r.result_model AS model_id, 'model' AS kind, r.id AS run_id,
                      r.backend, r.base_model, r.dataset_id, r.result_path AS path, NULL AS step,
                      r.finished_at AS created_at
               FROM runs r WHERE r.result_model IS NOT NULL
               UNION ALL
               SELECT c.model_id, 'checkpoint', c.run_id, r.backend, r.base_model, r.dataset_id,
                      c.path, c.step, c.created_at
               FROM checkpoints c JOIN runs r ON r.id = c.run_id WHERE c.model_id IS NOT NULL
               UNION ALL """ + ALIAS_ROWS + " ORDER BY created_at DESC"
        )

    def children(self, run_id: str) -> list[dict]:
        """Runs that re-run this one."""
        return [_load(r) for r in self._all("SELECT * FROM runs WHERE parent_run_id = ? ORDER BY created_at", [run_id])]

    def add_event(self, run_id: str, message: str, level="info", data: dict | None = None) -> None:
        """An event of ftm's own (not the provider's) on a run."""
        with self.write() as db:
            _insert_event(db, run_id, f"ftm-{time.time_ns()}", time.time(), level, "message", message, data)

    def record(self, run_id: str, progress: Progress) -> dict:
        """Write everything one poll learned, in one transaction."""
        with self.write() as db:
            _record_progress(db, self.home, run_id, progress)
            fields = self._stored(_run_fields(self.run(run_id), progress))
            db["runs"].update(run_id, {**_dump(fields), "updated_at": now()})
        return self.run(run_id)

    # --- runs adopted from a provider's history (`ftm import`) -----------------------------

    def held_run(self, backend: str, account: str, job_id: str, ftm_ids=()) -> dict | None:
        """The run that already stands for a provider's job: one ftm started (its job id, or the
        run id the job carries) or one an earlier import adopted from this account."""
        ids = [i for i in ftm_ids if i]
        marks = ",".join("?" * len(ids)) or "NULL"
        row = self._one(
            f"""SELECT * FROM runs WHERE (backend = ? AND provider_job_id = ?
                  AND (imported_at IS NULL OR imported_from = ?)) OR id IN ({marks})
                ORDER BY imported_at IS NOT NULL LIMIT 1""", [backend, job_id, account, *ids])
        return _load(row) if row else None

    def adopt(self, row: dict, progress: Progress, ftm_ids=()) -> dict | None:
        """Record a provider's job as a run with everything it reported, in one transaction;
        None (nothing written) where a run already stands for it, however many adopt at once."""
        with self.write() as db:
            if self.held_run(row["backend"], row["imported_from"], row["provider_job_id"], ftm_ids):
                return None
            db["runs"].insert(_dump(self._stored({**row, "updated_at": now()})))
            _record_progress(db, self.home, row["id"], progress)
        return self.run(row["id"])

    def imported_missing_data(self, backend: str, account: str) -> list[dict]:
        """This account's imported runs whose data the provider did not give back."""
        return [_load(r) for r in self._all(
            "SELECT * FROM runs WHERE backend = ? AND imported_from = ? AND missing_data IS NOT NULL"
            " ORDER BY created_at", [backend, account])]

    # --- evaluations --------------------------------------------------------------------

    def add_evaluation(self, row: dict, generations: list[dict], grades: list[dict] = ()) -> int:
        """Record one evaluation, every generation and every grade in it, in one transaction."""
        with self.write() as db:
            eval_id = db["evaluations"].insert({**row, "created_at": now()}).last_pk
            db["generations"].insert_all({**g, "evaluation_id": eval_id} for g in generations)
            db["grades"].insert_all({**g, "evaluation_id": eval_id} for g in grades)
        return eval_id

    def add_grades(self, evaluation_id: int, grades: list[dict]) -> None:
        """Record the grades of an evaluation already stored (its generations come first)."""
        with self.write() as db:
            db["grades"].insert_all({**g, "evaluation_id": evaluation_id} for g in grades)

    def evaluations(self, run_id: str | None = None, label: str | None = None) -> list[dict]:
        if run_id:
            return self._all("SELECT * FROM evaluations WHERE run_id = ? ORDER BY id", [run_id])
        if label:
            return self._all("SELECT * FROM evaluations WHERE label = ? ORDER BY id", [label])
        return self._all("SELECT * FROM evaluations ORDER BY id")

    def generations(self, evaluation_id: int) -> list[dict]:
        return self._all("SELECT * FROM generations WHERE evaluation_id = ? ORDER BY example", [evaluation_id])

    def grades(self, evaluation_id: int) -> list[dict]:
        return self._all("SELECT * FROM grades WHERE evaluation_id = ? ORDER BY grader, example", [evaluation_id])

    def grade_summary(self, evaluation_id: int) -> list[dict]:
        """Per grader: mean score, pass rate (where it has a threshold) and errors, in SQLite."""
        return self._all(
            """SELECT grader, type, avg(score) AS mean, avg(passed) AS pass_rate,
                      count(error) AS errors, count(*) AS n
               FROM grades WHERE evaluation_id = ? GROUP BY grader ORDER BY min(id)""", [evaluation_id])


    # --- exports ------------------------------------------------------------------------
    # Every `ftm datasets export`: the file written (path kept relative inside FTM_HOME).

    def add_export(self, row: dict) -> dict:
        """Record one export of a dataset; returns the row."""
        with self.write() as db:
            export_id = db["exports"].insert({**self._stored(row), "created_at": now()}).last_pk
        return self._one("SELECT * FROM exports WHERE id = ?", [export_id])

    def exports_of(self, dataset_id: str) -> list[dict]:
        """A dataset's exports, oldest first."""
        return self._all("SELECT * FROM exports WHERE dataset_id = ? ORDER BY created_at, id", [dataset_id])

    # --- served API ---------------------------------------------------------------------
    # `ftm serve`'s own records: the files and jobs its clients hold ids of, and chosen names.

    def add_api_file(self, row: dict) -> None:
        with self.write() as db:
            db["api_files"].insert(self._stored(row))

    def api_files(self) -> list[dict]:
        return self._all("SELECT * FROM api_files ORDER BY created_at, rowid")

    def delete_api_file(self, file_id: str) -> None:
        with self.write() as db:
            db.execute("DELETE FROM api_files WHERE id = ?", [file_id])

    def put_api_job(self, row: dict) -> None:
        """Record a job of ftm serve's API, or change the fields given."""
        row = {k: json.dumps(v) if k in API_JOB_JSON and v is not None else v for k, v in row.items()}
        with self.write() as db:
            db["api_jobs"].upsert(row, pk="id")

    def api_jobs(self) -> list[dict]:
        """Every job of ftm serve's API, oldest first."""
        rows = self._all("SELECT * FROM api_jobs ORDER BY created_at, rowid")
        return [{k: json.loads(v) if k in API_JOB_JSON and v else v for k, v in r.items()} for r in rows]

    def set_model_alias(self, name: str, run_id: str) -> None:
        """Make `name` answer with run_id's model, where several runs could (a choice kept)."""
        with self.write() as db:
            db["model_aliases"].upsert({"name": name, "run_id": run_id, "created_at": now()}, pk="name")

# --- helpers that shape rows ----------------------------------------------------------------


def _prefix(ref: str) -> str:
    return ref.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%" if ref else "\0"


def _single(rows: list[dict], ref: str, noun: str, listing: str) -> dict:
    if len(rows) == 1:
        return rows[0]
    if not rows:
        raise NotFound(f"no {noun} matches {ref!r}", f"See `{listing}` for the ids.")
    ids = ", ".join(r["id"][:16] for r in rows)
    raise InvalidInput(f"{ref!r} matches several {noun}s ({ids})", "Give more of the id.")


def _dump(row: dict) -> dict:
    return {k: (json.dumps(v) if k in RUN_JSON_FIELDS and v is not None else v) for k, v in row.items()}


def _load(row: dict) -> dict:
    return {k: (json.loads(v) if k in RUN_JSON_FIELDS and v else v) for k, v in row.items()}


def _insert_event(db, run_id, event_id, created_at, level, type_, message, data) -> None:
    db.execute(
        "INSERT OR IGNORE INTO events (run_id, provider_event_id, created_at, level, type, message, data)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        [run_id, event_id, iso(created_at), level, type_, message, json.dumps(data) if data else None],
    )


def _record_progress(db, home: Path, run_id: str, progress: Progress) -> None:
    """A progress's events, metrics and checkpoints, inside the caller's transaction."""
    for e in progress.events:
        _insert_event(db, run_id, e.id, e.created_at, e.level, e.type, e.message, e.data)
    for m in progress.metrics:
        upsert_metrics(db, run_id, m)
    for c in progress.checkpoints:
        _upsert_checkpoint(db, run_id, c, paths.to_ledger(c.path, home))


def _upsert_checkpoint(db, run_id: str, c, path: str | None) -> None:
    db.execute(
        "INSERT INTO checkpoints (run_id, step, model_id, path, metrics, created_at) VALUES (?, ?, ?, ?, ?, ?)"
        " ON CONFLICT(run_id, step) DO UPDATE SET model_id = excluded.model_id, path = excluded.path,"
        " metrics = excluded.metrics",
        [run_id, c.step, c.model_id, path, json.dumps(c.metrics or {}), iso(c.created_at)],
    )


def _run_fields(run: dict, p: Progress) -> dict:
    """The run columns a poll changes; values it did not report stay as they were."""
    fields = {"status": p.status, "cursor": p.cursor}
    optional = {
        "resolved_hyperparameters": p.hyperparameters,
        "result_model": p.result_model,
        "result_path": p.result_path,
        "trained_tokens": p.trained_tokens,
        "actual_cost": p.actual_cost,
        "total_steps": p.total_steps,
    }
    fields.update({k: v for k, v in optional.items() if v is not None})
    if p.error and (p.error.get("message") or p.error.get("code")):
        fields.update(
            error_code=p.error.get("code"), error_message=p.error.get("message"), error_param=p.error.get("param")
        )
    if p.status not in (CREATED, VALIDATING, QUEUED) and not run.get("started_at"):
        fields["started_at"] = now()
    if p.status in TERMINAL and not run.get("finished_at"):
        # when the backend says the run ended; the time of this poll only where it cannot say
        fields["finished_at"] = iso(p.finished_at) if p.finished_at else now()
    return fields
