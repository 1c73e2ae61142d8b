"""The ledger: its schema is pinned, migrations are recorded, and concurrent writers lose nothing."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path


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
   "status" TEXT,
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
);
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
);
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
CREATE UNIQUE INDEX "idx_generations_evaluation_id_example"
    ON "generations" ("evaluation_id", "example");
CREATE UNIQUE INDEX "idx_grades_evaluation_id_grader_example"
    ON "grades" ("evaluation_id", "grader", "example");
CREATE INDEX "idx_runs_backend"
    ON "runs" ("backend");
CREATE INDEX "idx_runs_created_at"
    ON "runs" ("created_at");
CREATE INDEX "idx_runs_dataset_id"
    ON "runs" ("dataset_id");
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
    names = [r[0] for r in conn.execute("SELECT name FROM _sqlite_migrations WHERE migration_set = 'ftm'")]
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


def test_a_read_only_ledger_is_one_line(tmp_path, chat_file):
    home = tmp_path / "ro-home"
    env = {**os.environ, "FTM_HOME": str(home)}
    subprocess.run([sys.executable, "-m", "ftmanager", "runs"], env=env, check=True, capture_output=True)
    before = (home / "ftm.db").read_bytes()
    for path in home.iterdir():
        path.chmod(0o444 if path.is_file() else 0o555)
    home.chmod(0o555)
    try:
        proc = subprocess.run([*_without_root_powers(), sys.executable, "-m", "ftmanager", "datasets", "add",
                               str(chat_file)], env=env, capture_output=True, text=True)
    finally:
        subprocess.run(["chmod", "-R", "u+w", str(home)])
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.startswith("Error: ") and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "ledger" in proc.stderr
    assert (home / "ftm.db").read_bytes() == before
    assert not (home / "datasets").exists()  # nothing half-written beside the ledger
