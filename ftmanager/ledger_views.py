"""Read-only SQL for the dashboard (`ftm ui`): a page of runs with its filters, live statuses,
and every point of a run's curves. Connections, errors and path handling are ledger.py's.

Each query is shaped for a ledger of 10,000 runs and a million metric rows: one page of runs
at a time (the count and the filter choices come from indexed or narrow scans), and a run's
metrics read in one ordered pass of its clustered primary key.
"""

from __future__ import annotations

from .comparing import TRAINING_TYPE_KEYS
from .errors import InvalidInput
from .hyperparameters import DPO, METHODS
from .facts import METRIC_NAMES, TERMINAL
from .ledger import Ledger

# How a run trained, in SQL so that the runs page can filter on it: dpo where methods.method_of says
# so (what sets a DPO run apart in the list), else the training type as comparing.method() reads it.
_NOT_METHOD = ", ".join(f"'{m}'" for m in METHODS)
METHOD_SQL = ("coalesce(CASE WHEN coalesce(json_extract(r.hyperparameters, '$.method'), r.method) = "
              f"'{DPO}' THEN '{DPO}' END, ") + ", ".join(
    f"CASE WHEN json_extract(r.{column}, '$.{key}') NOT IN ({_NOT_METHOD}) "
    f"THEN json_extract(r.{column}, '$.{key}') END"
    for column in ("resolved_hyperparameters", "options") for key in TRAINING_TYPE_KEYS) + """,
    CASE WHEN r.backend = 'local' THEN
        CASE WHEN lower(CAST(coalesce(json_extract(r.options, '$.quantize'), 'true') AS TEXT))
             IN ('false', '0', 'no', 'off') THEN 'lora' ELSE 'qlora' END END)"""
DURATION_SQL = "(julianday(r.finished_at) - julianday(coalesce(r.started_at, r.created_at))) * 86400.0"
SORTS = {
    "created": "r.created_at", "status": "r.status", "backend": "r.backend", "base_model": "r.base_model",
    "dataset": "d.name", "method": "method", "cost": "coalesce(r.actual_cost, r.estimated_cost)",
    "duration": "duration_s", "id": "r.id",
}
FILTERS = {"backend": "r.backend = ?", "status": "r.status = ?", "base_model": "r.base_model = ?",
           "dataset": "r.dataset_id = ?", "method": f"{METHOD_SQL} = ?",
           "since": "r.created_at >= ?", "until": "r.created_at < ?"}
PAGE_COLUMNS = ("r.id, r.backend, r.base_model, r.dataset_id, d.name AS dataset_name, r.status, r.suffix, "
                "r.estimated_cost, r.actual_cost, r.result_model, r.parent_run_id, r.created_at, r.started_at, "
                f"r.finished_at, r.error_message, {METHOD_SQL} AS method, {DURATION_SQL} AS duration_s")
MAX_PAGE = 1000


class Views:
    """The dashboard's reads over one Ledger."""

    def __init__(self, book: Ledger):
        self.book = book

    def runs_page(self, filters: dict, sort: str = "created", desc: bool = True,
                  limit: int = 100, offset: int = 0) -> dict:
        """One page of runs (newest first unless told) and how many match the filters."""
        if sort not in SORTS:
            raise InvalidInput(f"cannot sort by {sort!r}", f"Sort by one of {', '.join(SORTS)}.")
        where, params = _where(filters)
        limit, offset = max(1, min(int(limit), MAX_PAGE)), max(0, int(offset))
        rows = self.book._all(
            f"SELECT {PAGE_COLUMNS} FROM runs r LEFT JOIN datasets d ON d.id = r.dataset_id{where}"
            f" ORDER BY {SORTS[sort]} {'DESC' if desc else 'ASC'}, r.rowid {'DESC' if desc else 'ASC'}"
            f" LIMIT {limit} OFFSET {offset}", params)
        total = self.book._one(f"SELECT count(*) AS n FROM runs r{where}", params)["n"]
        return {"runs": rows, "total": total, "limit": limit, "offset": offset}

    def facets(self) -> dict:
        """The values each filter can take, as the ledger holds them."""
        out = {}
        for name, column in (("backend", "backend"), ("status", "status"), ("base_model", "base_model")):
            out[name] = [r["v"] for r in self.book._all(
                f"SELECT DISTINCT {column} AS v FROM runs WHERE {column} IS NOT NULL ORDER BY v")]
        out["method"] = [r["v"] for r in self.book._all(
            f"SELECT DISTINCT {METHOD_SQL} AS v FROM runs r WHERE v IS NOT NULL ORDER BY v")]
        out["dataset"] = self.book._all(
            "SELECT d.id, d.name FROM datasets d WHERE d.id IN (SELECT DISTINCT dataset_id FROM runs)"
            " ORDER BY d.name")
        return out

    def statuses(self, ids: list[str]) -> list[dict]:
        """The live fields of the runs named: what the runs page refreshes without reloading."""
        ids = [str(i) for i in ids][:MAX_PAGE]
        if not ids:
            return []
        marks = ",".join("?" * len(ids))
        return self.book._all(
            f"SELECT r.id, r.status, r.actual_cost, r.estimated_cost, r.result_model, r.finished_at, r.updated_at,"
            f" r.error_message, {DURATION_SQL} AS duration_s FROM runs r WHERE r.id IN ({marks})", ids)

    def counts(self) -> dict:
        """How many runs the ledger holds, and how many have not ended."""
        marks = ",".join("?" * len(TERMINAL))
        return self.book._one(f"SELECT count(*) AS runs, coalesce(sum(status NOT IN ({marks})), 0) AS unfinished"
                              " FROM runs", sorted(TERMINAL))

    def chat_models(self, limit: int = 500) -> list[dict]:
        """Succeeded runs with a model: what the playground can talk to, newest first."""
        return self.book._all("SELECT id, backend, base_model, result_model, suffix FROM runs WHERE status = 'succeeded'"
                              f" AND result_model IS NOT NULL ORDER BY created_at DESC LIMIT {int(limit)}")

    def metric_columns(self, run_id: str) -> dict[str, tuple[list, list]]:
        """Every (step, value) of each metric of a run, as two lists per metric that has any."""
        counts = ", ".join(f"count({name})" for name in METRIC_NAMES)
        with self.book.file.errors():
            cursor = self.book.conn.cursor()
            cursor.row_factory = None  # plain tuples: a Row per point costs more than the query
            present = cursor.execute(f"SELECT {counts} FROM metrics WHERE run_id = ?", [run_id]).fetchone()
            names = [name for name, n in zip(METRIC_NAMES, present) if n]
            if not names:
                return {}
            rows = cursor.execute(f"SELECT step, {', '.join(names)} FROM metrics WHERE run_id = ? ORDER BY step",
                                  [run_id]).fetchall()
        out = {}
        for i, name in enumerate(names, start=1):
            pairs = [(r[0], r[i]) for r in rows if r[i] is not None]
            out[name] = ([p[0] for p in pairs], [p[1] for p in pairs])
        return out

    def on_top_of(self, run_id: str, limit: int = 200) -> list[str]:
        """The ids of the runs trained on top of this run's model (chain links), oldest first."""
        rows = self.book._all(f"SELECT id FROM runs WHERE base_run_id = ? ORDER BY created_at LIMIT {int(limit)}", [run_id])
        return [r["id"] for r in rows]

    def exists(self, run_id: str) -> bool:
        """Is there a run with exactly this id (no prefix, no provider job id)?"""
        return self.book._one("SELECT 1 AS x FROM runs WHERE id = ?", [run_id]) is not None

    def run_row(self, ref: str) -> dict:
        """A run as ledger.run() gives it, with its dataset's name."""
        run = self.book.run(ref)
        named = self.book._one("SELECT name FROM datasets WHERE id = ?", [run["dataset_id"]])
        return {**run, "dataset_name": named["name"] if named else None}


def _where(filters: dict) -> tuple[str, list]:
    clauses, params = [], []
    for name, value in filters.items():
        if value in (None, ""):
            continue
        if name not in FILTERS:
            raise InvalidInput(f"no filter called {name!r}", f"Filter by {', '.join(FILTERS)}.")
        clauses.append(FILTERS[name])
        params.append(str(value))
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), params
