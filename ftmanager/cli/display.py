"""How `ftm show` lays out one run for a person."""

from __future__ import annotations

import json

from .output import _cell, table

FIELDS = ("id", "backend", "base_model", "method", "status", "provider_job_id", "imported_at", "imported_from",
          "dataset_id", "missing_data",
          "validation_dataset_id", "split", "suffix", "seed", "parent_run_id", "on_top_of", "result_model",
          "result_path", "trained_tokens", "estimated_cost", "actual_cost",
          "created_at", "started_at", "finished_at")
LABELS = {"on_top_of": "on top of"}  # the run whose model this one trained on: "run-x (SFT)"
METRIC_COLUMNS = ["step", "train_loss", "train_accuracy", "valid_loss", "valid_mean_token_accuracy"]


def _value(v) -> str:
    return json.dumps(v) if isinstance(v, (dict, list)) else str(v)


def render_run(info: dict) -> str:
    """The run's fields, error, hyperparameters, a metrics summary, checkpoints and events."""
    lines = [f"{LABELS.get(k, k):>22}: {_value(info[k])}" for k in FIELDS if info.get(k) not in (None, "", {})]
    if info.get("error_message") or info.get("error_code"):
        param = f" (param: {info['error_param']})" if info.get("error_param") else ""
        lines.append(f"{'error':>22}: {info.get('error_code') or ''}: {info['error_message']}{param}")
    lines.append(f"{'hyperparameters':>22}: {_value(info.get('hyperparameters') or {})}")
    lines.append(f"{'resolved':>22}: {_value(info.get('resolved_hyperparameters') or {})}")
    lines += _metrics(info["metrics"])
    if info["checkpoints"]:
        lines += ["", "checkpoints:", table(info["checkpoints"], ["step", "model_id", "path"])]
    if info["events"]:
        lines += ["", "events:"] + [f"  {e['created_at']}  {e['level']:<5}  {e['message']}" for e in info["events"]]
    return "\n".join(lines)


def _metrics(rows: list[dict]) -> list[str]:
    if not rows:
        return []
    shown = rows if len(rows) <= 12 else rows[:5] + rows[-5:]
    out = ["", f"metrics ({len(rows)} steps{', first and last 5' if len(rows) > 12 else ''}):",
           table(shown, METRIC_COLUMNS)]
    losses = [r["train_loss"] for r in rows if r["train_loss"] is not None]
    valid = [r["valid_loss"] for r in rows if r["valid_loss"] is not None]
    if losses:
        out.append(f"train_loss: first {losses[0]:.4f}, last {losses[-1]:.4f}, best {min(losses):.4f}")
    if valid:
        out.append(f"valid_loss: last {valid[-1]:.4f}, best {min(valid):.4f}")
    return out + _figures(rows)


def _figures(rows: list[dict]) -> list[str]:
    """The last value of each figure beyond the table's columns (a DPO run's rewards/margins, ...)."""
    from ..figures import NOT_FIGURES, SHOWN, ordered

    last = {}
    for row in rows:
        last.update({k: v for k, v in row.items() if k not in NOT_FIGURES and v is not None})
    if not last:
        return []
    width = max(len(name) for name in last)
    return ["", "figures (last value):"] + [f"  {name:<{width}}  {last[name]:.4f}" for name in ordered(last)[:SHOWN]]


def render_compare(result: dict) -> str:
    """A table with one row per field and one column per run; differing settings marked *."""
    runs, differ = result["runs"], set(result["differing_hyperparameters"])
    header = ["field"] + [r["id"] for r in runs]
    rows = [[("* " if f in differ else "  ") + f] + [_cell(r.get(f)) for r in runs] for f in result["fields"]
            if f != "id" and any(r.get(f) is not None for r in runs)]
    widths = [max(len(str(line[i])) for line in [header] + rows) for i in range(len(header))]
    lines = ["  ".join(str(v).ljust(w) for v, w in zip(line, widths)).rstrip() for line in [header] + rows]
    if differ:
        lines.append("* hyperparameters that differ between the runs")
    return "\n".join(lines)


def render_lineage(tree: dict, indent: str = "") -> str:
    """dataset -> uploads, derived datasets, runs -> models and re-runs, as an indented tree."""
    ds = tree["dataset"]
    split = f", {ds['split']}" if ds.get("split") else ""
    kind = f"{ds['kind']}, " if ds.get("kind") else ""
    lines = [f"{indent}dataset {ds['id'][:12]} {ds['name']} ({kind}{ds['n_examples']} examples{split})"]
    for up in tree["uploads"]:
        lines.append(f"{indent}  upload {up['file_id']} on {up['backend']} ({up['account']})")
    lines += [f"{indent}  {exported(e)}" for e in tree.get("exports", ())]
    for child in tree["derived"]:
        lines.append(render_lineage(child, indent + "  "))
    lines += [_render_run(node, indent + "  ") for node in tree["runs"]]
    return "\n".join(lines)


def exported(e: dict) -> str:
    """One export as a line: what it was written as, where, what it held, when."""
    dropped = f", {e['dropped']} left out" if e["dropped"] else ""
    return (f"export {e['target']} -> {e['path'] or '(standard output)'} ({e['kept']} examples{dropped}, "
            f"{e['bytes']:,} bytes, sha256 {e['sha256'][:12]}, {e['created_at']})")


def _render_run(node: dict, indent: str, label: str = "run") -> str:
    r = node["run"]
    lines = [f"{indent}{label} {r['id']} {r['backend']} {r['base_model']} {r['status']}"
             + (f" (job {r['provider_job_id']})" if r.get("provider_job_id") else "")
             + (f" on top of {node['on_top_of']}" if node.get("on_top_of") else "")]
    lines += [f"{indent}  {m['kind']} {m['model_id']}" for m in node["models"]]
    lines += [_render_run(child, indent + "  ", "re-run") for child in node["reruns"]]
    return "\n".join(lines)
