"""The run directory's files: the worker's append-only progress log, and liveness checks.

The worker is the only writer of progress.jsonl (rank 0 under DDP); the backend's poll()
reads it from a byte offset. Each record is one JSON line; a line without its newline is
still being written and is left for the next poll. Light: no torch here.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

PROGRESS = "progress.jsonl"
SPEC = "spec.json"
LAUNCH = "launch.json"  # pid + process start time of the detached worker
CANCEL = "cancel"  # its existence asks the worker to stop at the next step
PAUSE = "pause"  # its existence asks the worker to wait at the next step, checkpoint saved
LOG = "worker.log"
HEARTBEAT_EVERY = 5.0  # seconds between the worker's heartbeat records
HEARTBEAT_STALE = 300.0  # no heartbeat for this long (and no step) means the worker hangs


def append(run_dir: Path, kind: str, **data) -> None:
    """Append one record; a single write() of a whole line keeps concurrent readers safe."""
    record = {"kind": kind, "t": time.time(), **data}
    line = json.dumps(record, separators=(",", ":")) + "\n"
    with open(Path(run_dir) / PROGRESS, "a", encoding="utf-8") as f:
        f.write(line)
        f.flush()


def read_from(run_dir: Path, offset: int) -> tuple[list[tuple[int, dict]], int]:
    """Complete records after byte offset, each with its own offset, and the new offset."""
    path = Path(run_dir) / PROGRESS
    if not path.exists():
        return [], offset
    with open(path, "rb") as f:
        f.seek(offset)
        chunk = f.read()
    records, pos = [], offset
    for raw in chunk.splitlines(keepends=True):
        if not raw.endswith(b"\n"):
            break  # the worker is mid-write: read it next time
        records.append((pos, json.loads(raw)))
        pos += len(raw)
    return records, pos


def process_start_time(pid: int) -> float | None:
    """When process pid started (seconds since the epoch), or None when it is gone."""
    import psutil  # late: only poll needs it

    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return None
        return proc.create_time()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None


def reap(pid: int) -> None:
    """Collect pid's exit status if it is our child, so it does not linger as a zombie."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def write_launch(run_dir: Path, pid: int) -> None:
    """Record the worker's pid with its start time, so a reused pid is not taken for it."""
    info = {"pid": pid, "start_time": process_start_time(pid)}
    tmp = Path(run_dir) / (LAUNCH + ".tmp")
    tmp.write_text(json.dumps(info))
    tmp.replace(Path(run_dir) / LAUNCH)


def worker_gone(run_dir: Path) -> str | None:
    """Why the recorded worker is no longer running, or None while it runs."""
    path = Path(run_dir) / LAUNCH
    if not path.exists():
        return "the worker was never launched (no launch record)"
    info = json.loads(path.read_text())
    reap(info["pid"])
    started = process_start_time(info["pid"])
    if started is None:
        return f"worker process {info['pid']} is gone (killed, crashed, or the machine restarted)"
    if info.get("start_time") and abs(started - info["start_time"]) > 1.0:
        return f"worker process {info['pid']} is gone (its pid now belongs to another process)"
    return None
