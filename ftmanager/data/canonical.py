"""Writing canonical datasets: content-addressed, atomic, never a partial file.

A canonical file is one compact JSON object per line with keys sorted, so neither key order
nor whitespace in the source changes its sha256 (the dataset's id).
"""

from __future__ import annotations

import hashlib
import os
import random
import tempfile
from dataclasses import dataclass
from pathlib import Path

import orjson

from ..errors import InvalidInput
from .report import Report
from .source import read
from .validate import validate


@dataclass
class Saved:
    """A canonical dataset file under dest_dir, named by its sha256."""

    sha256: str
    path: Path
    n_examples: int
    format: str  # the format it was read from
    report: Report | None
    name: str | None = None
    created: bool = True  # False when the same content was already stored


def canonical_line(example: dict) -> bytes:
    """The canonical JSONL line of one example (its bytes decide the dataset's sha256)."""
    return orjson.dumps(example, option=orjson.OPT_SORT_KEYS) + b"\n"


class _Writer:
    """Streams canonical lines to a temp file in dest_dir, then renames it to <sha256>.jsonl."""

    def __init__(self, dest_dir: Path):
        self.dir = Path(dest_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        fd, self.tmp = tempfile.mkstemp(dir=self.dir, prefix=".partial-", suffix=".jsonl")
        self.file = os.fdopen(fd, "wb")
        self.hash = hashlib.sha256()
        self.n = 0

    def add(self, example: dict) -> None:
        line = canonical_line(example)
        self.hash.update(line)
        self.file.write(line)
        self.n += 1

    def finish(self) -> tuple[str, Path, bool]:
        """(sha256, final path, created): keeps an existing identical file untouched."""
        self.file.flush()
        os.fsync(self.file.fileno())
        self.file.close()
        sha = self.hash.hexdigest()
        final = self.dir / f"{sha}.jsonl"
        if final.exists():
            os.unlink(self.tmp)
            return sha, final, False
        os.chmod(self.tmp, 0o644)
        os.replace(self.tmp, final)  # atomic: readers see the whole file or none
        return sha, final, True

    def abort(self) -> None:
        self.file.close()
        if os.path.exists(self.tmp):
            os.unlink(self.tmp)


def _refuse(report: Report, path) -> InvalidInput:
    return InvalidInput(
        f"{path} has {report.n_errors():,} problems (first: {report.first_error()})",
        f"Run `ftm datasets validate {path}` to see them all.",
    )


def save(path, dest_dir, fmt: str = "auto", name: str | None = None, model: str | None = None,
         check: bool = True) -> Saved:
    """Validate a dataset file and store it as canonical JSONL at dest_dir/<sha256>.jsonl.

    check=False stores data that is not for training (held-out prompts) despite training rules.
    """
    report = validate(path, model=model, fmt=fmt)
    if check and not report.ok:
        raise _refuse(report, path)
    writer = _Writer(dest_dir)
    try:
        for _, example in read(path, report.format):
            writer.add(example)
        sha, final, created = writer.finish()
    except BaseException:
        writer.abort()
        raise
    stem = name or Path(path).name.split(".")[0]
    return Saved(sha, final, writer.n, report.format, report, stem, created)


def split(canonical_path, fraction: float, seed: int, dest_dir) -> tuple[Saved, Saved]:
    """(training, validation) parts of a canonical dataset: `fraction` of it, chosen by seed."""
    if not 0 < fraction < 1:
        raise InvalidInput(f"split fraction must be between 0 and 1, not {fraction}", "Use e.g. --split 0.1.")
    n = sum(1 for _ in read(canonical_path, "openai"))
    k = round(n * fraction)
    if not 0 < k < n:
        raise InvalidInput(f"a {fraction} split of {n} examples leaves one side empty", "Use a larger dataset or another fraction.")
    chosen = set(random.Random(seed).sample(range(n), k))
    writers = (_Writer(dest_dir), _Writer(dest_dir))
    try:
        for i, (_, example) in enumerate(read(canonical_path, "openai")):
            writers[i in chosen].add(example)
        done = [w.finish() for w in writers]
    except BaseException:
        for w in writers:
            w.abort()
        raise
    return tuple(
        Saved(sha, final, w.n, "openai", validate(final, fmt="openai"), None, created)
        for (sha, final, created), w in zip(done, writers)
    )
