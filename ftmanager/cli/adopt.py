"""`ftm import BACKEND`: bring a provider account's fine-tuning history into the ledger."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import typer

from ..errors import InvalidInput
from . import app
from .output import emit_json


def _since(text: str | None) -> float | None:
    if not text:
        return None
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidInput(f"--since {text!r} is not a date", "Give one like 2025-06-01 or 2025-06-01T12:00.") from None
    return (when if when.tzinfo else when.replace(tzinfo=timezone.utc)).timestamp()


@app.command("import")
def import_(
    backend: str = typer.Argument(..., help="Whose account to read: openai, azure, together, fireworks, or a plugin's."),
    data: list[Path] = typer.Option([], "--data", help="Local copies of training data the provider will not give "
                                    "back (files or folders, searched recursively); repeatable."),
    job: str = typer.Option(None, "--job", help="Import this one job (the provider's id)."),
    since: str = typer.Option(None, "--since", help="Only jobs created on or after this date (UTC), e.g. 2025-06-01."),
    dry_run: bool = typer.Option(False, "--dry-run", help="List what would come in; write nothing."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
):
    """Adopt every fine-tuning job of the provider account as a run, with its events, metrics,
    checkpoints and data. Safe to repeat: jobs already in the ledger are left alone, and
    `--data` attaches data that earlier imports could not get back."""
    from ..adopting import import_history

    summary = import_history(backend, data=data, job=job, since=_since(since), dry_run=dry_run)
    if as_json:
        emit_json(summary.as_dict())
        return
    print("\n".join(render(summary, dry_run)))


def render(s, dry_run: bool) -> list[str]:
    """The summary for a person: what came in, what was there, what data is still missing."""
    if dry_run:
        lines = [f"Would adopt {len(s.would_adopt)} job(s) from {s.backend} ({s.account}); "
                 f"{len(s.already)} already in the ledger."]
        return lines + [f"  {j['job_id']}  {j['status']}  {j['method'] or 'supervised'}  {j['created_at'] or ''}"
                        for j in s.would_adopt]
    lines = [f"Adopted {len(s.adopted)} job(s) from {s.backend} ({s.account}); {len(s.already)} already in the ledger."]
    lines += [f"  {a['run_id']}  {a['job_id']}  {a['status']}  {a['method'] or 'supervised'}" for a in s.adopted]
    lines.append(f"Data: {len(s.downloaded)} file(s) downloaded, {len(s.matched)} matched to local copies.")
    if s.completed:
        lines.append(f"Completed earlier imports: {', '.join(s.completed)}.")
    for m in s.missing:
        lines.append(f"Missing: {m['run_id']} {m['part']} file {m['file_id']} ({m['filename'] or 'name unknown'}, "
                     f"{m['bytes'] if m['bytes'] is not None else '?'} bytes): "
                     f"`ftm import {s.backend} --data PATH` attaches it.")
    for method, runs in s.not_rerunnable.items():
        lines.append(f"ftm cannot re-run {method} runs yet: {', '.join(runs)}.")
    return lines
