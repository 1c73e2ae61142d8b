"""The ledger: its schema is pinned, migrations are recorded, and concurrent writers lose nothing."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ftm

# The whole schema. A change here must come with a new migration appended in migrations.py.
SCHEMA = """\
CREATE TABLE "_sqlite_migrations" (
   "id" INTEGER PRIMARY KEY,
   "migration_set" TEXT,
   "name" TEXT,
   "applied_at" TEXT
);
CREATE TABLE "api_files" (
   "id" TEXT PRIMARY KEY,
   "filename" TEXT,
   "purpose" TEXT,
   "path" TEXT,
   "bytes" INTEGER,
   "base64" INTEGER,
   "created_at" TEXT
);
CREATE TABLE "api_jobs" (
   "id" TEXT PRIMARY KEY,
   "run_id" TEXT REFERENCES "runs"("id"),
   "model" TEXT,
   "fine_tuned_model" TEXT,
   "training_file" TEXT,
   "validation_file" TEXT,
   "suffix" TEXT,
   "seed" INTEGER,
   "metadata" TEXT,
   "hyperparameters" TEXT,
   "error" TEXT,
   "result_file" TEXT,
   "created_at" TEXT,
   "finished_at" TEXT
);
CREATE TABLE "checkpoints" (
   "id" INTEGER PRIMARY KEY,
   "run_id" TEXT REFERENCES "runs"("id"),
   "step" INTEGER,
   "model_id" TEXT,
   "path" TEXT,
   "metrics" TEXT,
   "created_at" TEXT
);
CREATE TABLE "datasets" (
   "id" TEXT PRIMARY KEY,
   "name" TEXT,
   "format" TEXT,
   "source" TEXT,
   "path" TEXT,
   "n_examples" INTEGER,
   "bytes" INTEGER,
   "stats" TEXT,
   "parent_id" TEXT REFERENCES "datasets"("id"),
   "split" TEXT,
   "created_at" TEXT
, "kind" TEXT NOT NULL DEFAULT 'chat');
CREATE TABLE "evaluations" (
   "id" INTEGER PRIMARY KEY,
   "run_id" TEXT REFERENCES "runs"("id"),
   "label" TEXT,
   "backend" TEXT,
   "model_id" TEXT,
   "base_model" TEXT,
   "dataset_id" TEXT REFERENCES "datasets"("id"),
   "n_examples" INTEGER,
   "exact_match" REAL,
   "token_f1" REAL,
   "rouge_l" REAL,
   "chrf" REAL,
   "seconds" REAL,
   "created_at" TEXT
, "bleu" REAL, "perplexity" REAL, "perplexity_source" TEXT, "graders" TEXT);
CREATE TABLE "events" (
   "id" INTEGER PRIMARY KEY,
   "run_id" TEXT REFERENCES "runs"("id"),
   "provider_event_id" TEXT,
   "created_at" TEXT,
   "level" TEXT,
   "type" TEXT,
   "message" TEXT,
   "data" TEXT
);
CREATE TABLE "exports" (
   "id" INTEGER PRIMARY KEY,
   "dataset_id" TEXT REFERENCES "datasets"("id"),
   "target" TEXT,
   "path" TEXT,
   "sha256" TEXT,
   "bytes" INTEGER,
   "kept" INTEGER,
   "dropped" INTEGER,
   "created_at" TEXT
);
CREATE TABLE "generations" (
   "id" INTEGER PRIMARY KEY,
   "evaluation_id" INTEGER REFERENCES "evaluations"("id"),
   "example" INTEGER,
   "prompt" TEXT,
   "reference" TEXT,
   "output" TEXT,
   "exact_match" REAL,
   "token_f1" REAL,
   "rouge_l" REAL,
   "chrf" REAL
, "bleu" REAL, "perplexity" REAL);
CREATE TABLE "grades" (
   "id" INTEGER PRIMARY KEY,
   "evaluation_id" INTEGER REFERENCES "evaluations"("id"),
   "example" INTEGER,
   "grader" TEXT,
   "type" TEXT,
   "score" REAL,
   "passed" INTEGER,
   "error" TEXT
);
CREATE TABLE "metric_values" (
   "run_id" TEXT REFERENCES "runs"("id"),
   "name" TEXT,
   "step" INTEGER,
   "value" REAL,
   PRIMARY KEY ("run_id", "name", "step")
) WITHOUT ROWID;
CREATE TABLE "metrics" (
   "run_id" TEXT REFERENCES "runs"("id"),
   "step" INTEGER,
   "train_loss" REAL,
   "train_accuracy" REAL,
   "valid_loss" REAL,
   "valid_mean_token_accuracy" REAL,
   "full_valid_loss" REAL,
   "full_valid_mean_token_accuracy" REAL,
   PRIMARY KEY ("run_id", "step")
) WITHOUT ROWID;
CREATE TABLE "model_aliases" (
   "name" TEXT PRIMARY KEY,
   "run_id" TEXT REFERENCES "runs"("id"),
   "created_at" TEXT
);
CREATE TABLE "runs" (
   "id" TEXT PRIMARY KEY,
   "backend" TEXT,
   "base_model" TEXT,
   "dataset_id" TEXT REFERENCES "datasets"("id"),
   "validation_dataset_id" TEXT REFERENCES "datasets"("id"),
   "split" TEXT,
   "hyperparameters" TEXT,
   "resolved_hyperparameters" TEXT,
   "options" TEXT,
   "suffix" TEXT,
   "seed" INTEGER,
   "status" TEXT,
   "provider_job_id" TEXT,
   "result_model" TEXT,
   "result_path" TEXT,
   "trained_tokens" INTEGER,
   "total_steps" INTEGER,
   "estimated_cost" REAL,
   "actual_cost" REAL,
   "error_code" TEXT,
   "error_message" TEXT,
   "error_param" TEXT,
   "parent_run_id" TEXT REFERENCES "runs"("id"),
   "cursor" TEXT,
   "created_at" TEXT,
   "started_at" TEXT,
   "finished_at" TEXT,
   "updated_at" TEXT
, "start_claim" TEXT, "method" TEXT, "metadata" TEXT, "imported_at" TEXT, "imported_from" TEXT, "missing_data" TEXT, "base_run_id" TEXT);
CREATE TABLE "uploads" (
   "id" INTEGER PRIMARY KEY,
   "dataset_id" TEXT REFERENCES "datasets"("id"),
   "backend" TEXT,
   "account" TEXT,
   "file_id" TEXT,
   "bytes" INTEGER,
   "created_at" TEXT
);
CREATE UNIQUE INDEX "idx__sqlite_migrations_migration_set_name"
    ON "_sqlite_migrations" ("migration_set", "name");
CREATE UNIQUE INDEX "idx_api_jobs_fine_tuned_model"
    ON "api_jobs" ("fine_tuned_model");
CREATE INDEX "idx_api_jobs_run_id"
    ON "api_jobs" ("run_id");
CREATE UNIQUE INDEX "idx_checkpoints_run_id_step"
    ON "checkpoints" ("run_id", "step");
CREATE INDEX "idx_evaluations_run_id"
    ON "evaluations" ("run_id");
CREATE UNIQUE INDEX "idx_events_run_id_provider_event_id"
    ON "events" ("run_id", "provider_event_id");
CREATE INDEX "idx_exports_dataset_id"
    ON "exports" ("dataset_id");
CREATE UNIQUE INDEX "idx_generations_evaluation_id_example"
    ON "generations" ("evaluation_id", "example");
CREATE UNIQUE INDEX "idx_grades_evaluation_id_grader_example"
    ON "grades" ("evaluation_id", "grader", "example");
CREATE INDEX "idx_runs_backend"
    ON "runs" ("backend");
CREATE INDEX idx_runs_base_run ON runs (base_run_id);
CREATE INDEX "idx_runs_created_at"
    ON "runs" ("created_at");
CREATE INDEX "idx_runs_dataset_id"
    ON "runs" ("dataset_id");
CREATE UNIQUE INDEX idx_runs_imported ON runs (backend, imported_from, provider_job_id) WHERE imported_at IS NOT NULL;
CREATE INDEX "idx_runs_provider_job_id"
    ON "runs" ("provider_job_id");
CREATE INDEX "idx_runs_status"
    ON "runs" ("status");
CREATE UNIQUE INDEX "idx_uploads_dataset_id_backend_account"
    ON "uploads" ("dataset_id", "backend", "account");
"""


def ledger_schema(path: Path) -> str:
    conn = sqlite3.connect(path)
    rows = conn.execute("SELECT sql FROM sqlite_master WHERE sql IS NOT NULL ORDER BY type DESC, name")
    return "".join(sql + ";\n" for (sql,) in rows)


def test_schema_is_pinned(ftm_home):
    from ftmanager.ledger import Ledger

    store = Ledger()
    assert ledger_schema(store.path) == SCHEMA


def test_migrations_are_recorded_once_and_wal_is_on(ftm_home):
    from ftmanager import migrations
    from ftmanager.ledger import Ledger

    Ledger().close()
    Ledger().close()  # a second open applies nothing again
    conn = sqlite3.connect(ftm_home / "ftm.db")
    names = [r[0] for r in conn.execute("SELECT name FROM _sqlite_migrations WHERE migration_set = 'ftm' ORDER BY id")]
    assert names == [fn.__name__ for fn in migrations.MIGRATIONS]
    assert all(n.startswith("m") and n[1:4].isdigit() for n in names)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA user_version").fetchone()[0] == len(names)


WRITER = """
import sys
from ftmanager.backend import Event, Progress
from ftmanager.ledger import Ledger
store, who = Ledger(), sys.argv[1]
store.add_dataset({"id": "d" * 64, "name": "shared", "n_examples": 1})
for i in range(40):
    run_id = f"run-{who}-{i}"
    store.create_run({"id": run_id, "backend": "fake", "base_model": "m", "dataset_id": "d" * 64, "status": "created"})
    store.record(run_id, Progress(status="running", events=[Event(f"e{i}", 0.0, "hello")],
                                   metrics=[{"step": 1, "train_loss": 1.0}]))
    store.add_event(run_id, "ours")
"""


def test_concurrent_writer_processes_lose_nothing(ftm_home):
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(n)], stderr=subprocess.PIPE, text=True)
             for n in range(4)]
    errors = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0, 0], errors
    conn = sqlite3.connect(ftm_home / "ftm.db")
    assert conn.execute("SELECT count(*) FROM runs").fetchone()[0] == 160
    assert conn.execute("SELECT count(*) FROM events").fetchone()[0] == 320
    assert conn.execute("SELECT count(*) FROM metrics").fetchone()[0] == 160
    assert conn.execute("SELECT count(*) FROM datasets").fetchone()[0] == 1


def test_a_held_write_lock_is_one_line_and_reads_go_on(ftm_home, chat_file):
    assert ftm("datasets", "add", chat_file).code == 0
    holder = sqlite3.connect(ftm_home / "ftm.db", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        other = chat_file.with_name("other.jsonl")
        other.write_text(chat_file.read_text().replace("terse", "brief"))
        result = ftm("datasets", "add", other, env={"FTM_BUSY_TIMEOUT": "0.5"})
        assert result.code == 1, result
        assert result.err.startswith("Error: the ledger") and "held by another process" in result.err
        assert len(result.err.strip().splitlines()) == 1
        assert ftm("datasets", "list").code == 0  # WAL: readers are not blocked by the writer
    finally:
        holder.execute("ROLLBACK")
    assert ftm("datasets", "add", other).code == 0


def _without_root_powers() -> list[str]:
    """Root ignores file modes: drop its DAC override so a read-only ledger really is read-only."""
    if os.geteuid() != 0:
        return []
    caps = "-dac_override,-dac_read_search"
    return ["setpriv", "--bounding-set", caps, "--inh-caps", caps]


def _read_only(home: Path) -> None:
    for path in sorted(home.rglob("*"), reverse=True):
        path.chmod(0o444 if path.is_file() else 0o555)
    home.chmod(0o555)


def test_a_read_only_home_can_be_read_and_refuses_writes_in_one_line(ftm_home, chat_file):
    run = ftm("submit", chat_file, "-b", "fake", "--wait", "--json").json()
    before = (ftm_home / "ftm.db").read_bytes()
    listed = set(os.listdir(ftm_home))
    _read_only(ftm_home)
    try:
        def as_user(*args):
            return subprocess.run([*_without_root_powers(), sys.executable, "-m", "ftmanager", *map(str, args)],
                                  capture_output=True, text=True)

        reads = {args[0]: as_user(*args) for args in (["runs"], ["show", run["id"]], ["datasets", "list"])}
        other = chat_file.with_name("other.jsonl")
        other.write_text(chat_file.read_text().replace("terse", "brief"))
        writes = [as_user("datasets", "add", other), as_user("submit", other, "-b", "fake"),
                  as_user("cancel", run["id"])]
    finally:
        subprocess.run(["chmod", "-R", "u+w", str(ftm_home)])
    for name, proc in reads.items():
        assert proc.returncode == 0 and not proc.stderr, (name, proc.stderr)
    assert run["id"] in reads["runs"].stdout and run["result_model"] in reads["show"].stdout
    assert run["dataset_id"][:12] in reads["datasets"].stdout
    for proc in writes[:2]:
        assert proc.returncode == 1, proc.stderr
        assert proc.stderr.startswith("Error: the ledger") and "read-only" in proc.stderr, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert writes[2].returncode == 1 and "already succeeded" in writes[2].stderr
    assert (ftm_home / "ftm.db").read_bytes() == before and set(os.listdir(ftm_home)) == listed


def test_threads_share_the_ledger_with_a_connection_each(ftm_home):
    import threading

    from ftmanager.backend import Progress
    from ftmanager.ledger import close_ledgers, ledger

    ledger().add_dataset({"id": "d" * 64, "name": "shared", "n_examples": 1})
    conns, errors = {}, []

    def work(n: int) -> None:
        try:
            for i in range(15):
                run_id = f"run-t{n}-{i}"
                ledger().create_run({"id": run_id, "backend": "fake", "base_model": "m", "dataset_id": "d" * 64,
                                     "status": "created"})
                ledger().record(run_id, Progress(status="running", metrics=[{"step": 1, "train_loss": 1.0}]))
                assert ledger().run(run_id)["status"] == "running"
            conns[n] = ledger().conn
        except Exception as err:  # noqa: BLE001  (reported below)
            errors.append(repr(err))

    threads = [threading.Thread(target=work, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(ledger().runs()) == 90 and len({id(c) for c in conns.values()}) == 6
    close_ledgers()  # closes every thread's connection, from this one
    for conn in conns.values():
        with pytest.raises(sqlite3.ProgrammingError):
            conn.execute("SELECT 1")
    assert len(ledger().runs()) == 90  # a later call opens afresh


def _ledger_with_runs(home: Path, n: int = 300) -> bytes:
    from ftmanager.ledger import Ledger

    home.mkdir(exist_ok=True)
    book = Ledger(home / "ftm.db")
    book.add_dataset({"id": "d" * 64, "name": "shared", "n_examples": 1})
    for i in range(n):
        book.create_run({"id": f"run-{i:04d}", "backend": "fake", "base_model": "m", "dataset_id": "d" * 64,
                         "status": "succeeded", "suffix": "x" * 100})
    book.close()  # the last connection folds the WAL back into the file
    return (home / "ftm.db").read_bytes()


def _garbage_runs_root(path: Path, data: bytes) -> bytes:
    conn = sqlite3.connect(f"file:{path}?immutable=1", uri=True)
    root = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = 'runs'").fetchone()[0]
    size = conn.execute("PRAGMA page_size").fetchone()[0]
    conn.close()
    start = (root - 1) * size
    return data[:start] + bytes([0xFF]) * size + data[start + size:]


@pytest.mark.parametrize("damage", ["truncated", "garbage pages", "garbage header"])
def test_a_damaged_ledger_is_one_line_and_left_as_it_is(ftm_home, chat_file, damage):
    data = _ledger_with_runs(ftm_home)
    damaged = {"truncated": data[: len(data) // 2],
               "garbage pages": _garbage_runs_root(ftm_home / "ftm.db", data),
               "garbage header": bytes(range(256)) * 4 + data[1024:]}[damage]
    (ftm_home / "ftm.db").write_bytes(damaged)
    for args in (["runs"], ["show", "run-0001"], ["datasets", "list"], ["models"], ["submit", chat_file, "-b", "fake"]):
        result = ftm(*args)
        assert result.code == 1 and result.err.startswith("Error: the ledger"), (args, result)
        assert "damaged" in result.err and len(result.err.strip().splitlines()) == 1, (args, result)
    assert (ftm_home / "ftm.db").read_bytes() == damaged
    assert not (ftm_home / "datasets").exists()


def test_an_empty_ledger_beside_datasets_and_runs_is_refused_not_recreated(ftm_home, chat_file):
    run = ftm("submit", chat_file, "-b", "fake", "--wait", "--json").json()
    (ftm_home / "ftm.db").write_bytes(b"")  # lost: zero bytes, its datasets and runs still there
    for args in (["runs"], ["datasets", "add", chat_file], ["show", run["id"]]):
        result = ftm(*args)
        assert result.code == 1 and "is empty or missing" in result.err and "datasets" in result.err, result
        assert len(result.err.strip().splitlines()) == 1
    assert (ftm_home / "ftm.db").read_bytes() == b""


@pytest.mark.parametrize("newer", ["user_version", "unknown migration"])
def test_a_ledger_from_a_newer_ftm_is_refused_and_left_as_it_is(ftm_home, newer):
    from ftmanager import migrations

    _ledger_with_runs(ftm_home, 3)
    conn = sqlite3.connect(ftm_home / "ftm.db", isolation_level=None)
    if newer == "user_version":
        conn.execute(f"PRAGMA user_version = {migrations.VERSION + 1}")
    else:
        conn.execute("INSERT INTO _sqlite_migrations (migration_set, name, applied_at) VALUES ('ftm', 'm999_future', 'x')")
    conn.close()
    before = (ftm_home / "ftm.db").read_bytes()
    for args in (["runs"], ["sync"]):
        result = ftm(*args)
        assert result.code == 1 and "written by a newer ftm" in result.err, result
        assert len(result.err.strip().splitlines()) == 1
    assert (ftm_home / "ftm.db").read_bytes() == before


def test_paths_inside_ftm_home_are_stored_relative_and_read_back_absolute(ftm_home):
    from ftmanager.backend import Checkpoint, Progress
    from ftmanager.ledger import ledger

    adapter, outside = ftm_home / "runs" / "run-1" / "adapter", "/srv/models/elsewhere"
    book = ledger()
    book.add_dataset({"id": "d" * 64, "name": "x", "path": str(ftm_home / "datasets" / "d.jsonl"), "source": outside})
    book.create_run({"id": "run-1", "backend": "local", "base_model": "m", "dataset_id": "d" * 64, "status": "running"})
    book.record("run-1", Progress(status="succeeded", result_model="local:run-1", result_path=str(adapter),
                                  checkpoints=[Checkpoint(step=2, model_id="local:run-1:step-2", path=str(adapter) + "-2")]))
    raw = sqlite3.connect(ftm_home / "ftm.db")
    assert raw.execute("SELECT path, source FROM datasets").fetchone() == ("datasets/d.jsonl", outside)
    assert raw.execute("SELECT result_path FROM runs").fetchone() == ("runs/run-1/adapter",)
    assert raw.execute("SELECT path FROM checkpoints").fetchone() == ("runs/run-1/adapter-2",)
    assert book.dataset("x")["path"] == str(ftm_home / "datasets" / "d.jsonl")
    assert book.run("run-1")["result_path"] == str(adapter)
    assert {m["path"] for m in book.models()} == {str(adapter), str(adapter) + "-2"}


def test_m003_moves_start_claims_to_their_column_and_makes_home_paths_relative(tmp_path):
    import json

    from ftmanager import migrations
    from ftmanager.ledger import Ledger

    home, db = ledger_before(tmp_path, migrations.m003_core)
    db["datasets"].insert({"id": "d" * 64, "name": "x", "path": str(home / "datasets" / "d.jsonl"), "source": "/data/x.jsonl"})
    claim = {"host": "h", "pid": 1, "since": 1.0}
    db["runs"].insert({"id": "run-1", "dataset_id": "d" * 64, "status": "created", "result_path": str(home / "runs" / "a"),
                       "cursor": json.dumps({"starting": claim, "offset": 3})})
    db.conn.close()
    book = Ledger(home / "ftm.db")
    raw = sqlite3.connect(home / "ftm.db")
    assert raw.execute("SELECT path, source FROM datasets").fetchone() == ("datasets/d.jsonl", "/data/x.jsonl")
    row = raw.execute("SELECT cursor, start_claim, result_path FROM runs").fetchone()
    assert (json.loads(row[0]), json.loads(row[1]), row[2]) == ({"offset": 3}, claim, "runs/a")
    assert book.run("run-1")["result_path"] == str(home / "runs" / "a")


def test_a_finished_threads_connection_closes_with_it(ftm_home):
    import gc
    import threading

    from ftmanager.ledger import ledger

    book = ledger()
    threads = [threading.Thread(target=lambda: book.runs()) for _ in range(20)]
    for t in threads:
        t.start()
        t.join()
    gc.collect()
    assert len(book.file._all) <= 2  # this thread's, and none left behind by the 20


def test_m008_moves_what_serve_said_ahead_of_a_run_onto_the_run(tmp_path):
    from ftmanager import migrations
    from ftmanager.ledger import Ledger

    home, db = ledger_before(tmp_path, migrations.m008_serve_jobs_are_runs)
    db["datasets"].insert({"id": "d" * 64, "name": "x"})
    for run_id, status in (("run-c", "running"), ("run-p", "running"), ("run-s", "succeeded"), ("run-q", "queued")):
        db["runs"].insert({"id": run_id, "dataset_id": "d" * 64, "status": status})
    said = [("ftjob-c", "run-c", "cancelled", "2026-01-02T03:04:05Z"), ("ftjob-p", "run-p", "paused", None),
            ("ftjob-s", "run-s", "cancelled", "2026-01-02T03:04:05Z"), ("ftjob-q", "run-q", None, None),
            ("ftjob-f", None, "failed", "2026-01-02T03:04:05Z")]
    for job_id, run_id, status, at in said:
        db["api_jobs"].insert({"id": job_id, "run_id": run_id, "status": status, "finished_at": at,
                               "error": '{"code": "invalid_training_file"}' if run_id is None else None})
    db.conn.close()
    book = Ledger(home / "ftm.db")
    runs = {r: (book.run(r)["status"], book.run(r)["finished_at"]) for r in ("run-c", "run-p", "run-s", "run-q")}
    assert runs == {"run-c": ("cancelled", "2026-01-02T03:04:05Z"), "run-p": ("paused", None),
                    "run-s": ("succeeded", None), "run-q": ("queued", None)}  # an ended run keeps its own end
    refused = [j for j in book.api_jobs() if j["id"] == "ftjob-f"][0]
    assert "status" not in refused and refused["error"] == {"code": "invalid_training_file"}


def test_a_ledger_at_m009_upgrades_keeping_its_metrics_and_takes_figures_by_name(tmp_path):
    from ftmanager import migrations
    from ftmanager.backend import Progress
    from ftmanager.ledger import Ledger

    home, db = ledger_before(tmp_path, migrations.m010_named_metrics)
    db["datasets"].insert({"id": "d" * 64, "name": "x"})
    db["runs"].insert({"id": "run-old", "dataset_id": "d" * 64, "status": "succeeded", "backend": "openai"})
    db["metrics"].insert_all([{"run_id": "run-old", "step": s, "train_loss": 1 / s} for s in (1, 2, 3)])
    db.conn.close()
    book = Ledger(home / "ftm.db")
    assert [(m["step"], m["train_loss"]) for m in book.metrics("run-old")] == [(1, 1.0), (2, 0.5), (3, 1 / 3)]
    assert book.metric_summary("run-old")["final_train_loss"] == 1 / 3  # and no figures: nothing else shown
    assert not [k for k in book.metric_summary("run-old") if "/" in k]
    book.record("run-old", Progress(status="succeeded", metrics=[{"step": 3, "rewards/margins": 0.25}]))
    assert book.metrics("run-old")[-1] == {"run_id": "run-old", "step": 3, "train_loss": 1 / 3, "train_accuracy": None,
                                           "valid_loss": None, "valid_mean_token_accuracy": None, "full_valid_loss": None,
                                           "full_valid_mean_token_accuracy": None, "rewards/margins": 0.25}
    assert book.metric_curve("run-old", "rewards/margins") == [(3, 0.25)]


def ledger_before(tmp_path, migration):
    """(home, its database) as a ledger was before `migration`: every earlier one applied, no later."""
    import sqlite_utils

    from ftmanager import migrations

    home = tmp_path / "old-home"
    home.mkdir()
    db = sqlite_utils.Database(home / "ftm.db")
    before = sqlite_utils.Migrations("ftm")
    for fn in migrations.MIGRATIONS[: migrations.MIGRATIONS.index(migration)]:
        before(name=fn.__name__)(fn)
    before.apply(db)
    return home, db


def test_a_ledger_at_m010_upgrades_naming_the_run_each_run_trained_on_top_of(tmp_path):
    from ftmanager import migrations
    from ftmanager.ledger import Ledger

    home, db = ledger_before(tmp_path, migrations.m011_chains)
    db["datasets"].insert({"id": "d" * 64, "name": "x"})
    db["runs"].insert_all([
        {"id": "run-sft", "dataset_id": "d" * 64, "status": "succeeded", "backend": "openai",
         "base_model": "gpt-4o-mini-2024-07-18", "result_model": "ft:gpt-4o-mini-2024-07-18:acme::abc",
         "created_at": "2026-01-01T00:00:00Z"},
        {"id": "run-dpo", "dataset_id": "d" * 64, "status": "succeeded", "backend": "openai",
         "base_model": "ft:gpt-4o-mini-2024-07-18:acme::abc", "created_at": "2026-01-02T00:00:00Z"},
        {"id": "run-other", "dataset_id": "d" * 64, "status": "succeeded", "backend": "openai",
         "base_model": "gpt-4o-mini-2024-07-18", "created_at": "2026-01-03T00:00:00Z"}])
    db.conn.close()
    book = Ledger(home / "ftm.db")
    assert {r: book.run(r)["base_run_id"] for r in ("run-sft", "run-dpo", "run-other")} == \
        {"run-sft": None, "run-dpo": "run-sft", "run-other": None}
