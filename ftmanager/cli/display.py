"""How `ftm show` lays out one run for a person."""

from __future__ import annotations

import json

from .output import table

FIELDS = ("id", "backend", "base_model", "status", "provider_job_id", "dataset_id",
          "validation_dataset_id", "split", "suffix", "seed", "parent_run_id", "result_model",
          "result_path", "trained_tokens", "estimated_cost", "actual_cost",
          "created_at", "started_at", "finished_at")
METRIC_COLUMNS = ["step", "train_loss", "train_accuracy", "valid_loss", "valid_mean_token_accuracy"]


def _value(v) -> str:
    return json.dumps(v) if isinstance(v, (dict, list)) else str(v)


def render_run(info: dict) -> str:
    """The run's fields, error, hyperparameters, a metrics summary, checkpoints and events."""
    lines = [f"{k:>22}: {_value(info[k])}" for k in FIELDS if info.get(k) not in (None, "", {})]
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
    return out
