"""The ledger's SQL for a run's step metrics: the fixed columns of `metrics` and the figures
kept by name in `metric_values` (DPO's rewards/margins, a provider's own names).

Part of the ledger's one place for SQL: ledger.py mixes the reads in and calls upsert_metrics
inside its own transactions. Each read is shaped for runs of 100,000 steps: summaries and curves
are computed in SQLite over the clustered primary keys, never by loading every row.
"""

from __future__ import annotations

from . import figures
from .errors import InvalidInput
from .facts import METRIC_NAMES


class MetricReads:
    """Metric reads for a Ledger (which gives _all, _one, file and conn)."""

    def metrics(self, run_id: str) -> list[dict]:
        """Every step's metrics: the fixed columns, then the step's other figures by name."""
        rows = self._all("SELECT * FROM metrics WHERE run_id = ? ORDER BY step", [run_id])
        named = self._all("SELECT step, name, value FROM metric_values WHERE run_id = ?", [run_id])
        if named:
            by_step = {r["step"]: r for r in rows}
            for r in named:
                by_step.setdefault(r["step"], {}).setdefault(r["name"], r["value"])
        return rows

    def metric_summary(self, run_id: str) -> dict:
        """Final and best value of each metric, computed in SQLite (runs may have 100k steps)."""
        best = self._one(
            """SELECT count(*) AS steps, max(step) AS last_step, min(train_loss) AS best_train_loss,
                      max(train_accuracy) AS best_train_accuracy, min(valid_loss) AS best_valid_loss,
                      max(valid_mean_token_accuracy) AS best_valid_mean_token_accuracy
               FROM metrics WHERE run_id = ?""", [run_id])
        for name in ("train_loss", "train_accuracy", "valid_loss", "valid_mean_token_accuracy"):
            row = self._one(f"SELECT {name} AS v FROM metrics WHERE run_id = ? AND {name} IS NOT NULL"
                            " ORDER BY step DESC LIMIT 1", [run_id])
            best[f"final_{name}"] = row["v"] if row else None
        return best | {f"final_{name}": value for name, value in self.figures_last(run_id).items()}

    def figure_names(self, run_id: str) -> list[str]:
        """The names of a run's other figures (figures.SHOWN at most), as people read them."""
        # min(name) above the last one found: one seek per name, however many steps each has
        rows = self._all("""WITH RECURSIVE n(name) AS (
                                SELECT min(name) FROM metric_values WHERE run_id = ?
                                UNION ALL
                                SELECT (SELECT min(name) FROM metric_values WHERE run_id = ? AND name > n.name)
                                FROM n WHERE n.name IS NOT NULL)
                            SELECT name FROM n WHERE name IS NOT NULL LIMIT ?""",
                         [run_id, run_id, figures.SHOWN])
        return figures.ordered(r["name"] for r in rows)

    def figures_last(self, run_id: str) -> dict[str, float]:
        """The last value of each of a run's other figures, by name."""
        last = "SELECT value FROM metric_values WHERE run_id = ? AND name = ? ORDER BY step DESC LIMIT 1"
        return {name: self._one(last, [run_id, name])["value"] for name in self.figure_names(run_id)}

    def figure_columns(self, run_id: str) -> dict[str, tuple[list, list]]:
        """Every (step, value) of each of a run's other figures, as two lists per name."""
        out = {}
        with self.file.errors():
            cursor = self.conn.cursor()
            cursor.row_factory = None  # plain tuples: a Row per point costs more than the query
            for name in self.figure_names(run_id):
                rows = cursor.execute("SELECT step, value FROM metric_values WHERE run_id = ? AND name = ?"
                                      " ORDER BY step", [run_id, name]).fetchall()
                out[name] = ([r[0] for r in rows], [r[1] for r in rows])
        return out

    def metric_curve(self, run_id: str, name: str, max_points: int = 2000) -> list[tuple[int, float]]:
        """(step, value) pairs of one metric, thinned to at most about max_points."""
        if name not in METRIC_NAMES:
            return self._figure_curve(run_id, name, max_points)
        n = self._one("SELECT count(*) AS n FROM metrics WHERE run_id = ?", [run_id])["n"]
        every = max(1, n // max_points)
        with self.file.errors():
            rows = self.conn.execute(
                f"SELECT step, {name} FROM metrics WHERE run_id = ? AND {name} IS NOT NULL"
                f" AND (step % ? = 0 OR step = (SELECT max(step) FROM metrics WHERE run_id = ?)) ORDER BY step",
                [run_id, every, run_id])
            return [tuple(r) for r in rows]

    def _figure_curve(self, run_id: str, name: str, max_points: int) -> list[tuple[int, float]]:
        """metric_curve of one of a run's other figures (rewards/margins, ...), read from metric_values."""
        if not figures.is_name(name):
            raise InvalidInput(f"no metric called {name!r}",
                               f"Choose one of {', '.join(METRIC_NAMES)} or a figure the run reports.")
        where = "FROM metric_values WHERE run_id = ? AND name = ?"
        n = self._one(f"SELECT count(*) AS n {where}", [run_id, name])["n"]
        every = max(1, n // max_points)
        with self.file.errors():
            rows = self.conn.execute(f"SELECT step, value {where} AND (step % ? = 0 OR step = (SELECT max(step)"
                                     f" {where})) ORDER BY step", [run_id, name, every, run_id, name])
            return [tuple(r) for r in rows]


def upsert_metrics(db, run_id: str, metrics: dict) -> None:
    """Merge a step's metrics: events and the results file each fill some columns; the figures
    beyond them go to metric_values by name. A step or value that is not a number is left out."""
    step = figures.number(metrics.get("step"))
    if step is None or step != int(step) or abs(step) >= 2**63:
        return
    values = {k: v for k in METRIC_NAMES if (v := figures.number(metrics.get(k))) is not None}
    columns = ", ".join(["run_id", "step", *values])
    marks = ", ".join("?" * (2 + len(values)))
    update = ", ".join(f"{k} = excluded.{k}" for k in values) or "step = excluded.step"
    db.execute(
        f"INSERT INTO metrics ({columns}) VALUES ({marks}) ON CONFLICT(run_id, step) DO UPDATE SET {update}",
        [run_id, int(step), *values.values()],
    )
    db.conn.executemany(  # the names are bound values, never SQL: a provider chooses them
        "INSERT INTO metric_values (run_id, name, step, value) VALUES (?, ?, ?, ?)"
        " ON CONFLICT(run_id, name, step) DO UPDATE SET value = excluded.value",
        [(run_id, name, int(step), value) for name, value in figures.extra(metrics)],
    )
