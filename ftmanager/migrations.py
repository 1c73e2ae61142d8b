"""The ledger's schema, as append-only sqlite-utils migrations named mNNN_what.

Never edit a migration that has shipped: add a new one at the end of MIGRATIONS.
sqlite_utils is imported inside apply() only: `ftm runs` must not pay for it at start-up.
"""

from __future__ import annotations


def m001_initial(db) -> None:
    db["datasets"].create(
        {
            "id": str,  # sha256 of the canonical chat JSONL: same content, same id
            "name": str,
            "format": str,  # the format it was imported from
            "source": str,  # the file it was imported from
            "path": str,  # the canonical JSONL under FTM_HOME/datasets
            "n_examples": int,
            "bytes": int,
            "stats": str,  # JSON: token statistics from validation
            "parent_id": str,  # the dataset it was split from, if any
            "split": str,  # JSON: {"fraction", "seed", "part"} for split datasets
            "created_at": str,
        },
        pk="id",
        foreign_keys=[("parent_id", "datasets", "id")],
    )
    db["uploads"].create(
        {
            "id": int,
            "dataset_id": str,
            "backend": str,
            "account": str,  # base URL + organisation + project; never a key
            "file_id": str,  # the provider's file id
            "bytes": int,
            "created_at": str,
        },
        pk="id",
        foreign_keys=[("dataset_id", "datasets", "id")],
    )
    db["uploads"].create_index(["dataset_id", "backend", "account"], unique=True)
    db["runs"].create(
        {
            "id": str,  # ours; never a provider's id
            "backend": str,
            "base_model": str,
            "dataset_id": str,
            "validation_dataset_id": str,
            "split": str,  # JSON: {"fraction", "seed"} when --split made the validation set
            "hyperparameters": str,  # JSON, as asked (numbers or "auto")
            "resolved_hyperparameters": str,  # JSON, as the backend resolved them
            "options": str,  # JSON, backend-specific options
            "suffix": str,
            "seed": int,
            "status": str,  # OpenAI's statuses, "created" before the backend confirms, or any unknown one verbatim
            "provider_job_id": str,
            "result_model": str,  # ft:... for OpenAI, local:<run id> for local runs
            "result_path": str,  # where local weights (adapter) lie
            "trained_tokens": int,
            "total_steps": int,
            "estimated_cost": float,  # USD
            "actual_cost": float,  # USD
            "error_code": str,
            "error_message": str,
            "error_param": str,
            "parent_run_id": str,  # the run this one re-runs
            "cursor": str,  # JSON: where the backend's next poll starts
            "created_at": str,
            "started_at": str,
            "finished_at": str,
            "updated_at": str,
        },
        pk="id",
        foreign_keys=[
            ("dataset_id", "datasets", "id"),
            ("validation_dataset_id", "datasets", "id"),
            ("parent_run_id", "runs", "id"),
        ],
    )
    for column in ("status", "backend", "dataset_id", "created_at", "provider_job_id"):
        db["runs"].create_index([column])
    db["events"].create(
        {
            "id": int,
            "run_id": str,
            "provider_event_id": str,
            "created_at": str,
            "level": str,
            "type": str,  # "message" or "metrics"
            "message": str,
            "data": str,  # JSON
        },
        pk="id",
        foreign_keys=[("run_id", "runs", "id")],
    )
    db["events"].create_index(["run_id", "provider_event_id"], unique=True)
    # WITHOUT ROWID clusters a run's steps together on disk: summarising a run of 100,000 steps
    # reads them in order instead of hopping from the index to the table row by row.
    db.execute(
        """CREATE TABLE "metrics" (
   "run_id" TEXT REFERENCES "runs"("id"),
   "step" INTEGER,
   "train_loss" REAL,
   "train_accuracy" REAL,
   "valid_loss" REAL,
   "valid_mean_token_accuracy" REAL,
   "full_valid_loss" REAL,
   "full_valid_mean_token_accuracy" REAL,
   PRIMARY KEY ("run_id", "step")
) WITHOUT ROWID"""
    )
    db["checkpoints"].create(
        {
            "id": int,
            "run_id": str,
            "step": int,
            "model_id": str,  # ft:...:ckpt-step-N, or local:<run id>:step-N
            "path": str,
            "metrics": str,  # JSON
            "created_at": str,
        },
        pk="id",
        foreign_keys=[("run_id", "runs", "id")],
    )
    db["checkpoints"].create_index(["run_id", "step"], unique=True)


def m002_evaluations(db) -> None:
    db["evaluations"].create(
        {
            "id": int,
            "run_id": str,  # null for a base model evaluated as a baseline
            "label": str,  # the run id, or "base:<backend>:<model>"
            "backend": str,
            "model_id": str,  # what answered: an ft:/local: model, or the base model
            "base_model": str,
            "dataset_id": str,  # the held-out data, stored like any dataset
            "n_examples": int,
            "exact_match": float,  # means over the examples
            "token_f1": float,
            "rouge_l": float,
            "chrf": float,
            "seconds": float,
            "created_at": str,
        },
        pk="id",
        foreign_keys=[("run_id", "runs", "id"), ("dataset_id", "datasets", "id")],
    )
    db["evaluations"].create_index(["run_id"])
    db["generations"].create(
        {
            "id": int,
            "evaluation_id": int,
            "example": int,  # index in the held-out file
            "prompt": str,  # JSON: the messages sent
            "reference": str,
            "output": str,
            "exact_match": float,
            "token_f1": float,
            "rouge_l": float,
            "chrf": float,
        },
        pk="id",
        foreign_keys=[("evaluation_id", "evaluations", "id")],
    )
    db["generations"].create_index(["evaluation_id", "example"], unique=True)


def m003_core(db) -> None:
    """The start claim gets a column of its own; paths inside FTM_HOME become relative to it."""
    import json
    from pathlib import Path

    from .paths import to_ledger

    # JSON {"host", "pid", "since"}: a process is inside the backend's start() for this run
    db["runs"].add_column("start_claim", str)
    for run_id, cursor in db.execute("SELECT id, cursor FROM runs WHERE cursor LIKE '%\"starting\"%'").fetchall():
        cursor = json.loads(cursor)
        claim = cursor.pop("starting", None)
        db["runs"].update(run_id, {"cursor": json.dumps(cursor), "start_claim": json.dumps(claim) if claim else None})
    home = Path(next(row[2] for row in db.execute("PRAGMA database_list").fetchall() if row[1] == "main")).parent
    for table, columns in (("datasets", ("path", "source")), ("runs", ("result_path",)), ("checkpoints", ("path",))):
        for column in columns:
            for value, in db.execute(f"SELECT DISTINCT {column} FROM {table} WHERE {column} IS NOT NULL").fetchall():
                stored = to_ledger(value, home)
                if stored != value:
                    db.execute(f"UPDATE {table} SET {column} = ? WHERE {column} = ?", [stored, value])


def m004_serve(db) -> None:
    """What `ftm serve` answers for across restarts: its files, its jobs (each an ftm run), chosen names."""
    db["api_files"].create(
        {
            "id": str,  # file-...: the id a client of ftm serve holds
            "filename": str,
            "purpose": str,
            "path": str,  # the bytes, under FTM_HOME/serve
            "bytes": int,
            "base64": int,  # 1: its content is served base64-encoded (results files, as OpenAI does)
            "created_at": str,
        },
        pk="id",
    )
    db["api_jobs"].create(
        {
            "id": str,  # ftjob-...
            "run_id": str,  # the ftm run that trains it; null until its files are imported
            "model": str,  # the base model snapshot the client asked for
            "fine_tuned_model": str,  # ft:<model>:ftm:<suffix>:<run>: the name it answers to once succeeded
            "training_file": str,
            "validation_file": str,
            "suffix": str,
            "seed": int,
            "metadata": str,  # JSON
            "hyperparameters": str,  # JSON, as asked ("auto" kept)
            "status": str,  # what the API says ahead of the run (cancelled, paused), or failed with no run
            "error": str,  # JSON {code, message, param} for a job that failed before its run existed
            "result_file": str,
            "created_at": str,
            "finished_at": str,  # when the API's own status became terminal (a cancel asked)
        },
        pk="id",
        foreign_keys=[("run_id", "runs", "id")],
    )
    db["api_jobs"].create_index(["run_id"])
    db["api_jobs"].create_index(["fine_tuned_model"], unique=True)
    db["model_aliases"].create(
        {"name": str, "run_id": str, "created_at": str},  # a name two runs could answer to: this one does
        pk="name",
        foreign_keys=[("run_id", "runs", "id")],
    )


def m005_grades(db) -> None:
    """BLEU and perplexity beside the other scores, and a grade per grader per example."""
    for table in ("evaluations", "generations"):
        db[table].add_column("bleu", float)  # corpus BLEU for an evaluation, sentence BLEU per answer
        db[table].add_column("perplexity", float)  # of the reference answers
    # "reference_tokens" (the model's own log-probabilities) or "validation_loss" (exp of the provider's)
    db["evaluations"].add_column("perplexity_source", str)
    db["evaluations"].add_column("graders", str)  # JSON: the grader definitions as given
    db["grades"].create(
        {
            "id": int,
            "evaluation_id": int,
            "example": int,  # index in the held-out file
            "grader": str,  # the grader's name
            "type": str,  # string_check, text_similarity, score_model
            "score": float,
            "passed": int,  # 1/0 against the grader's pass_threshold; null without one
            "error": str,  # why the score is 0 (a missing variable, an unreadable judge reply)
        },
        pk="id",
        foreign_keys=[("evaluation_id", "evaluations", "id")],
    )
    db["grades"].create_index(["evaluation_id", "grader", "example"], unique=True)


def m006_exports(db) -> None:
    """Every dataset export: what was written, where, and what it held."""
    db["exports"].create(
        {
            "id": int,
            "dataset_id": str,
            "target": str,  # the format or provider it was written for (`--to`)
            "path": str,  # the file written (relative to FTM_HOME inside it); null: standard output
            "sha256": str,  # of the bytes written
            "bytes": int,
            "kept": int,  # examples written
            "dropped": int,  # examples of the dataset left out
            "created_at": str,
        },
        pk="id",
        foreign_keys=[("dataset_id", "datasets", "id")],
    )
    db["exports"].create_index(["dataset_id"])


def m007_dataset_kind(db) -> None:
    # "chat" (messages, for SFT) or "preference" (chosen/rejected pairs, for DPO): a run checks
    # it before anything is uploaded; every dataset stored before DPO existed is chat data
    db["datasets"].add_column("kind", str, not_null_default="chat")


def m008_serve_jobs_are_runs(db) -> None:
    """A serve job's status is its run's: what the API said ahead of a run (a cancel, a pause) moves
    onto the run, and api_jobs keeps the request, the run id and a refusal from before any run."""
    for status, finished in (("cancelled", "COALESCE(r.finished_at, j.finished_at)"), ("paused", "r.finished_at")):
        db.execute(f"""UPDATE runs AS r SET status = ?, finished_at = {finished}
                       FROM api_jobs AS j WHERE j.run_id = r.id AND j.status = ?
                       AND r.status NOT IN ('succeeded', 'failed', 'cancelled')""", [status, status])
    db.execute("ALTER TABLE api_jobs DROP COLUMN status")


def m009_imported_runs(db) -> None:
    """Runs adopted from a provider's history by `ftm import`: what they were, where they came from."""
    db["runs"].add_column("method", str)  # as the provider says it: supervised, dpo, ...; null: supervised
    db["runs"].add_column("metadata", str)  # JSON: the job's metadata at the provider
    db["runs"].add_column("imported_at", str)  # when `ftm import` adopted it; null for runs ftm started
    db["runs"].add_column("imported_from", str)  # the account it was read from (never a key)
    # JSON [{"part", "file_id", "filename", "bytes"}]: data the provider would not give back
    db["runs"].add_column("missing_data", str)
    # one run per job of an account, however many imports run at once
    db.execute("CREATE UNIQUE INDEX idx_runs_imported ON runs (backend, imported_from, provider_job_id)"
               " WHERE imported_at IS NOT NULL")


def m010_named_metrics(db) -> None:
    # A run's per-step figures beyond the fixed columns of `metrics` (DPO's rewards/margins, a
    # provider's own names), one row per run, name and step. A long table rather than a column per
    # figure: providers choose these names, so a new one needs no migration and a hostile one no
    # DDL. The key (run_id, name, step) WITHOUT ROWID clusters one figure of one run in step order,
    # so its curve or its last value is a single range read, as a column of `metrics` is.
    db.execute(
        """CREATE TABLE "metric_values" (
   "run_id" TEXT REFERENCES "runs"("id"),
   "name" TEXT,
   "step" INTEGER,
   "value" REAL,
   PRIMARY KEY ("run_id", "name", "step")
) WITHOUT ROWID"""
    )


def m011_chains(db) -> None:
    """A run trained on top of an earlier run's model names that run: SFT, then DPO on its result.
    Runs recorded before this say it by their base model being another run's result model."""
    db["runs"].add_column("base_run_id", str)
    db.execute("""UPDATE runs AS r SET base_run_id = (SELECT u.id FROM runs AS u
                    WHERE u.result_model = r.base_model AND u.id != r.id ORDER BY u.created_at LIMIT 1)
                  WHERE r.base_run_id IS NULL""")
    db.execute("CREATE INDEX idx_runs_base_run ON runs (base_run_id)")


MIGRATIONS = [m001_initial, m002_evaluations, m003_core, m004_serve, m005_grades, m006_exports,
              m007_dataset_kind, m008_serve_jobs_are_runs, m009_imported_runs, m010_named_metrics,
              m011_chains]  # append-only
VERSION = len(MIGRATIONS)  # kept in PRAGMA user_version: a fast "is the schema current?"


def apply(db) -> None:
    """Apply pending migrations to a sqlite_utils Database inside the caller's transaction."""
    from sqlite_utils import Migrations

    migrations = Migrations("ftm")
    for fn in MIGRATIONS:
        migrations(name=fn.__name__)(fn)
    migrations.apply(db)
    db.execute(f"PRAGMA user_version = {VERSION}")
