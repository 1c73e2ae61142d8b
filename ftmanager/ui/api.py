"""What the dashboard's pages ask for: plain functions from a request's values to JSON-able dicts.

Reads go through ledger_views (the page of runs, curves) and the library's own reads (a run's
events, evaluations, comparing.compare, catalog.dataset_info); actions through jobs.py, as the
CLI's do. Nothing here knows HTTP.
"""

from __future__ import annotations

import time
from pathlib import Path

from .. import catalog, chains, comparing, jobs, methods, registry
from ..backend import Backend
from ..errors import FtmError, InvalidInput
from ..facts import SUCCEEDED, is_terminal
from ..ledger import ledger
from ..ledger_views import Views
from .downsample import lttb

HIDDEN_RUN_FIELDS = ("cursor", "start_claim")
CURVE_POINTS = 1000
HISTOGRAM_BINS = 20
MAX_COMPARED = 20


def views() -> Views:
    """The dashboard's reads over this process's ledger (opened, and checked, on first use)."""
    return Views(ledger())


def health() -> dict:
    """Whether the ledger opens, can be written, and how many runs it holds."""
    v = views()
    counts = v.counts()  # opens and checks the file
    return {"ok": True, "read_only": v.book.file.read_only, **counts}


def curves(run_ref: str, points: int = CURVE_POINTS) -> dict:
    """Each metric of a run by step (its other figures by name among them), thinned by LTTB to
    about `points`, and epochs per step."""
    v = views()
    run = v.run_row(run_ref)
    points = max(10, min(int(points), 20_000))
    series = {}
    columns = v.metric_columns(run["id"]) | v.book.figure_columns(run["id"])  # a DPO run's rewards/* too
    for name, (xs, ys) in columns.items():
        kept_x, kept_y = lttb(xs, ys, points)
        series[name] = {"x": kept_x, "y": kept_y, "n": len(xs)}
    return {"run_id": run["id"], "series": series, "epochs_per_step": _epochs_per_step(run)}


def _epochs_per_step(run: dict) -> float | None:
    """What `ftm compare --by epoch` scales steps by; None where the run does not record it."""
    try:
        return comparing._epoch_scale(ledger(), run)
    except FtmError:
        return None


def run_detail(ref: str) -> dict:
    """A run with everything its page shows."""
    book, v = ledger(), views()
    run = {k: val for k, val in v.run_row(ref).items() if k not in HIDDEN_RUN_FIELDS}
    rid = run["id"]
    parent = _brief(book.run(run["parent_run_id"])) if run["parent_run_id"] else None
    return {
        "run": run, "method": comparing.method(run), "settings": _settings(run),
        "events": book.events(rid)[-500:], "checkpoints": book.checkpoints(rid),
        "summary": book.metric_summary(rid), "parent": parent,
        "children": [_brief(c) for c in book.children(rid)], **_chain(v, run),
        "evaluations": [_evaluation(book, e) for e in book.evaluations(run_id=rid)],
        "served_names": [m for m in book.models() if m["run_id"] == rid],
        "actions": actions(run),
    }


def _chain(v: Views, run: dict) -> dict:
    """The run it trains on top of ('run-x (SFT)', linked where the run is still there), what it
    waits for while a queued link, and the runs trained on top of it, as `ftm show` names them."""
    base = run.get("base_run_id")
    found = bool(base) and v.exists(base)  # exactly: methods.label alone would take a prefix of another id
    on_top_of = {"id": base, "label": methods.label(base) if found else f"{base} (deleted)", "exists": found}
    trained = methods.method_of(run)
    return {"training": methods.METHOD_LABELS.get(trained, trained), "on_top_of": on_top_of if base else None,
            "waiting_for": base if chains.waiting(run) else None,
            "built_on": [{"id": c, "label": methods.label(c)} for c in v.on_top_of(run["id"])]}


def _settings(run: dict) -> dict:
    return {"asked": run.get("hyperparameters") or {}, "resolved": run.get("resolved_hyperparameters") or {},
            "options": run.get("options") or {}, "seed": run.get("seed"), "suffix": run.get("suffix"),
            "validation_dataset_id": run.get("validation_dataset_id"), "split": run.get("split")}


def _brief(run: dict) -> dict:
    return {k: run.get(k) for k in ("id", "backend", "base_model", "status", "created_at")}


def _evaluation(book, evaluation: dict) -> dict:
    return {**evaluation, "generations": book.generations(evaluation["id"]),
            "grades": book.grades(evaluation["id"]), "grade_summary": book.grade_summary(evaluation["id"])}


def actions(run: dict) -> list[str]:
    """The buttons a run's page offers: what its state, its backend and the ledger allow."""
    if ledger().file.read_only:
        return []
    try:
        cls = registry.load(run["backend"])
    except Exception:  # noqa: BLE001  (a broken plugin leaves the page readable, with no buttons)
        return []
    can_pause, can_resume = cls.pause is not Backend.pause, cls.resume is not Backend.resume
    status, out = run["status"], []
    if not is_terminal(status):
        out.append("cancel")
    if can_pause and status == "running" and run.get("provider_job_id"):
        out.append("pause")
    if can_resume and run.get("provider_job_id") and (status == "paused" or (is_terminal(status) and status != SUCCEEDED)):
        out.append("resume")
    return out


def act(ref: str, action: str) -> dict:
    """Cancel, pause or resume a run through jobs.py, as `ftm cancel|pause|resume` do."""
    ledger().writable()
    doing = {"cancel": jobs.cancel, "pause": jobs.pause, "resume": jobs.resume}
    if action not in doing:
        raise InvalidInput(f"no action called {action!r}", "Use cancel, pause or resume.")
    run = doing[action](ref)
    return {"id": run["id"], "status": run["status"]}


def compare(ids: list[str]) -> dict:
    """comparing.compare's table, each run's curves, and the generations side by side per prompt."""
    if len(ids) > MAX_COMPARED:
        raise InvalidInput(f"{len(ids)} runs are too many to compare at once", f"Choose at most {MAX_COMPARED}.")
    table = comparing.compare(ids)
    curves_ = {c["id"]: curves(c["id"], 500) for c in table["runs"]}
    return {**table, "curves": curves_, "prompts": _side_by_side([c["id"] for c in table["runs"]])}


def _side_by_side(run_ids: list[str]) -> list[dict]:
    """Per held-out example: its prompt, its reference, and each run's latest answer and scores."""
    book, rows = ledger(), {}
    for rid in run_ids:
        evals = book.evaluations(run_id=rid)
        if not evals:
            continue
        for g in book.generations(evals[-1]["id"]):
            row = rows.setdefault(g["example"], {"example": g["example"], "prompt": g["prompt"],
                                                  "reference": g["reference"], "answers": {}})
            row["answers"][rid] = {"output": g["output"], "token_f1": g["token_f1"], "exact_match": g["exact_match"]}
    return [rows[k] for k in sorted(rows)]


def datasets() -> list[dict]:
    """Every dataset, newest first, without its server paths."""
    return [{k: d[k] for k in ("id", "name", "format", "n_examples", "bytes", "parent_id", "created_at")}
            for d in ledger().datasets()]


_reports: dict[str, dict] = {}  # by dataset id: the content is immutable, so is its report


def dataset_detail(ref: str) -> dict:
    """A dataset's statistics, length histogram, validation report by line and lineage."""
    info = catalog.dataset_info(ref)
    info["runs"] = [_brief(r) for r in info["runs"][:200]]
    if info["id"] not in _reports:
        _reports[info["id"]] = _check(info)
    return {**info, **_reports[info["id"]], "lineage": catalog.lineage(info["id"])}


def _check(info: dict) -> dict:
    from .. import data

    path = Path(info["path"] or "")
    if not path.is_file():
        return {"report": None, "histogram": None, "examples": []}
    report = data.validate(path, model=(info["stats"] or {}).get("model"), workers=1).as_dict()
    report.pop("path", None)  # a server path: the dataset's id says which file it is
    return {"report": report, "histogram": _histogram(path), "examples": _first_examples(path)}


def _first_examples(path: Path, n: int = 5, chars: int = 600) -> list[list[dict]]:
    """The first n examples' messages (role and text, each cut to `chars`): what the dataset holds."""
    import orjson

    out = []
    with open(path, "rb") as lines:
        for line, _ in zip(lines, range(n)):
            messages = orjson.loads(line).get("messages") or []
            out.append([{"role": str(m.get("role")), "content": str(m.get("content") or "")[:chars]} for m in messages])
    return out


def _histogram(path: Path) -> dict:
    """How many examples have how many characters, in HISTOGRAM_BINS equal bins."""
    import orjson

    lengths = []
    with open(path, "rb") as lines:
        for line in lines:
            messages = orjson.loads(line).get("messages") or []
            lengths.append(sum(len(str(m.get("content") or "")) for m in messages))
    if not lengths:
        return {"edges": [], "counts": []}
    low, high = min(lengths), max(lengths)
    width = max(1, -(-(high - low + 1) // HISTOGRAM_BINS))
    counts = [0] * HISTOGRAM_BINS
    for n in lengths:
        counts[(n - low) // width] += 1
    return {"unit": "characters", "edges": [low + i * width for i in range(HISTOGRAM_BINS + 1)], "counts": counts}


def models() -> dict:
    """Every model and alias the ledger knows, and the runs the playground can talk to."""
    v = views()
    return {"models": v.book.models()[:2000], "chat": v.chat_models()}


def chat(body: dict) -> dict:
    """One answer from a run's model to a conversation, through jobs.generate as `ftm chat` uses."""
    ref, messages = body.get("run"), body.get("messages")
    if not isinstance(ref, str) or not ref:
        raise InvalidInput("choose a model to talk to", "Pick a run in the playground.")
    if not isinstance(messages, list) or not messages or not all(_is_message(m) for m in messages):
        raise InvalidInput("messages must be a list of {role, content} objects", "Type a message first.")
    tokens = body.get("max_new_tokens", 128)
    if not isinstance(tokens, int) or not 1 <= tokens <= 4096:
        raise InvalidInput("max_new_tokens must be a whole number from 1 to 4096", "")
    start = time.perf_counter()
    answer = jobs.generate(ref, [messages], tokens)[0]
    return {"run": ref, "answer": answer, "seconds": round(time.perf_counter() - start, 3), "max_new_tokens": tokens}


def _is_message(m) -> bool:
    return (isinstance(m, dict) and m.get("role") in ("system", "user", "assistant")
            and isinstance(m.get("content"), str))


def keep_synced(every: float, stop) -> None:
    """Poll every unfinished run's backend each `every` seconds until stop is set, as `ftm sync`
    does: the ledger the pages read keeps moving while nobody runs `ftm watch`. Each trouble is
    said once on the console, not every round."""
    import sys

    said = set()
    while not stop.wait(every):
        try:
            if ledger().file.read_only or not views().counts()["unfinished"]:
                continue
            lines = [f"{r['run']['id']}: {r['error']}" for r in jobs.sync() if r["error"]]
        except FtmError as err:
            lines = [err.line()]
        for line in lines:
            if line not in said:
                said.add(line)
                print(f"ftm ui: {line}", file=sys.stderr)
