"""Which model answers for a name: every model with weights in the ledger, under each of its names.

A name is one of: a base-model name from the served-models table (the bare local model); a
run's own model or checkpoint id (`local:run-1a2b3c4d`, `local:run-1a2b3c4d:step-40`, and
pulled ones alike: anything the ledger has weights for); or an alias from Ledger.models():
the ft: name this server gave a job (and `:ckpt-step-N` for its checkpoints), or an OpenAI
parent's ft: name for its local re-run, so an application moves by changing OPENAI_BASE_URL.
A name two runs could answer to is refused until one is chosen (`ftm serve --alias`).
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from .. import engine
from ..front.state import ApiError
from ..facts import epoch
from ..ledger import ledger
from . import table

SYSTEM_CREATED = 1700000000  # base models have no creation time of ours; OpenAI lists one


def named() -> dict[str, list[dict]]:
    """Every name with weights behind it -> the ledger rows (one per run that could answer)."""
    out: dict[str, list[dict]] = defaultdict(list)
    for row in ledger().models():
        if row["path"] and row["model_id"] and Path(row["path"]).exists():
            if all(r["run_id"] != row["run_id"] for r in out[row["model_id"]]):
                out[row["model_id"]].append(row)
    return out


def listing(organization: str) -> list[dict]:
    """models.list: the base names, then every served model (checkpoints are retrieved by name)."""
    base = [_model(name, SYSTEM_CREATED, "system") for name in table.table()]
    rows = [rows[0] for name, rows in named().items() if rows[0]["step"] is None]
    tuned = [_model(r["model_id"], int(epoch(r["created_at"]) or 0), organization) for r in rows]
    return base + sorted(tuned, key=lambda m: -m["created"])


def lookup(name: str, organization: str) -> dict:
    """models.retrieve for a name, or the 404 (or the 400 of an ambiguous name)."""
    if name in table.table():
        return _model(name, SYSTEM_CREATED, "system")
    row = row_for(name)
    return _model(name, int(epoch(row["created_at"]) or 0), organization)


def row_for(name: str) -> dict:
    """The one ledger row that answers for name (a 404 for none, a 400 naming the choices for several)."""
    rows = named().get(name, [])
    if not rows and not name.startswith(("ft:", "local:")):
        raise table.unmapped(name, 404)  # a base name: say which table to add it to
    if not rows:
        raise ApiError(404, f"The model '{name}' does not exist", param="model", code="model_not_found")
    if len(rows) > 1:
        runs = ", ".join(sorted(r["run_id"] for r in rows))
        raise ApiError(400, f"The model '{name}' names {len(rows)} local models (runs {runs}). Choose one: "
                       f"restart ftm serve with --alias '{name}={rows[0]['run_id']}', or ask for a run's own "
                       f"model id (see `ftm models`).", param="model", code="ambiguous_model")
    return rows[0]


def target(name: str):
    """The Target (base, adapter, template) that answers for name."""
    run_target = engine.get().target

    if name in table.table():
        return run_target(None, table.lookup(name, 404).local)
    row = row_for(name)
    from ..pulls import local_view  # a pulled run's adapter answers on its mapped local base

    return run_target(*local_view(row["backend"], row["path"], row["base_model"]))


def _model(name: str, created: int, owner: str) -> dict:
    return {"id": name, "object": "model", "created": created, "owned_by": owner}
