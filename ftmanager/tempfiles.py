"""Temporary files named by the process that writes them, so that a later writer can tell what a
killed process left behind (removed) from what a live one is still writing (kept).

Also: paths as printable text. Nothing heavy is imported here: `ftm runs` must start fast.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

UNOWNED_STALE_S = 3600  # a temp file named by no process id (older ftm) is stale after this


def shown(path) -> str:
    """A path as text that prints and stores anywhere: bytes that are not UTF-8 become U+FFFD."""
    return os.fsencode(path).decode("utf-8", "replace")


def owned(prefix: str) -> str:
    """prefix + this process's id: the start of a temp file name clear_stale understands."""
    return f"{prefix}{os.getpid()}-"


def clear_stale(folder: Path, prefix: str, suffix: str = "") -> None:
    """Remove folder's temp files named prefix<pid>-...suffix whose process is gone."""
    for path in Path(folder).glob(f"{glob.escape(prefix)}*{glob.escape(suffix)}"):
        owner = path.name[len(prefix):].split("-", 1)[0]
        try:
            if owner.isdigit():
                stale = not alive(int(owner))
            else:
                stale = time.time() - path.stat().st_mtime > UNOWNED_STALE_S
            if stale:
                shutil.rmtree(path) if path.is_dir() else path.unlink()
        except FileNotFoundError:
            pass  # another writer cleared it first


NOTES = "partials"  # under FTM_HOME: one note per temp file being written outside it


@contextlib.contextmanager
def noted(tmp: Path) -> Iterator[Path]:
    """While tmp (named by owned()) is written outside FTM_HOME, a note under FTM_HOME names it,
    so that the next ftm command removes it when this process is killed first (sweep_noted)."""
    from .paths import home

    folder = home() / NOTES
    folder.mkdir(exist_ok=True)
    note = folder / f"{os.getpid()}-{uuid.uuid4().hex}"
    note.write_bytes(os.fsencode(Path(tmp).absolute()))
    try:
        yield tmp
    finally:
        note.unlink(missing_ok=True)


def sweep_noted() -> None:
    """Remove the temp files that killed ftm processes noted (noted) and left behind."""
    from .paths import home_path

    for note in (home_path() / NOTES).glob("*-*"):
        owner = note.name.split("-", 1)[0]
        if not owner.isdigit() or alive(int(owner)):
            continue
        with contextlib.suppress(OSError):
            left = Path(os.fsdecode(note.read_bytes()))
            # only a file of that process's own naming: a note never removes anything else
            if f"{owner}-" in left.name and left.name.startswith(".ftm-") and left.is_file():
                left.unlink()
        note.unlink(missing_ok=True)


PARTIAL_DIR = ".ftm-partial-"


def built_in_place(out: Path, build: Callable[[Path], Path]) -> Path:
    """build(folder) under a temporary name beside `out`, then renamed to `out`: a killed build
    leaves no half-written `out` to block the next one (which clears the killed one's temp)."""
    out = Path(out)
    clear_stale(out.parent, PARTIAL_DIR, f"-{out.name}")
    tmp = out.parent / f"{owned(PARTIAL_DIR)}{out.name}"
    try:
        made = Path(build(tmp))
        os.rename(tmp, out)  # replaces an empty `out`; fails on a full one (checked before)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out / made.relative_to(tmp) if made.is_relative_to(tmp) else made


def alive(pid: int) -> bool:
    """Whether a process with this id runs on this machine."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    except (OverflowError, ValueError):
        return False
    return True
