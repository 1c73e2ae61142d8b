"""Writing canonical datasets: content-addressed, atomic, never a partial file.

A canonical file is one compact JSON object per line with keys sorted, so neither key order
nor whitespace in the source changes its sha256 (the dataset's id).
"""

from __future__ import annotations

import hashlib
import os
import random
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from ..errors import InvalidInput, LedgerError
from ..tempfiles import clear_stale, owned, shown
from .preference import canonical_format, kind_of
from .report import Report
from .source import Source, read
from .validate import check_source, validate


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
    skipped: list = field(default_factory=list)  # (line, why) of records left out by skip_invalid


def canonical_line(example: dict) -> bytes:
    """The canonical JSONL line of one example (its bytes decide the dataset's sha256)."""
    return orjson.dumps(example, option=orjson.OPT_SORT_KEYS) + b"\n"


PARTIAL = ".partial-"


class _Writer:
    """Streams canonical lines to a temp file in dest_dir, then renames it to <sha256>.jsonl.

    The temp file is named by this process's id, so a later writer can tell that one left
    behind by a killed process (and removes it) from one still being written.
    """

    def __init__(self, dest_dir: Path):
        self.dir = Path(dest_dir)
        self.hash = hashlib.sha256()
        self.n = 0
        with self._writing():
            self.dir.mkdir(parents=True, exist_ok=True)
            clear_stale(self.dir, PARTIAL, ".jsonl")
            fd, self.tmp = tempfile.mkstemp(dir=self.dir, prefix=owned(PARTIAL), suffix=".jsonl")
        self.file = os.fdopen(fd, "wb")

    @contextmanager
    def _writing(self):
        try:
            yield
        except OSError as e:  # a full disk, a read-only FTM_HOME
            raise LedgerError(f"cannot write to {self.dir} ({e.strerror or e})",
                              "Free some disk space or point FTM_HOME at a writable directory, then retry.") from None

    def add(self, example: dict) -> None:
        self.add_line(canonical_line(example))

    def add_line(self, line: bytes) -> None:
        self.hash.update(line)
        with self._writing():
            self.file.write(line)
        self.n += 1

    def finish(self) -> tuple[str, Path, bool]:
        """(sha256, final path, created): keeps an existing identical file untouched."""
        with self._writing():
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
        try:
            self.file.close()
        except OSError:
            pass  # the unflushed rest of a file that is removed anyway
        if os.path.exists(self.tmp):
            os.unlink(self.tmp)


def _refuse(report: Report, skipped: int = 0) -> InvalidInput:
    if skipped:
        return InvalidInput(
            f"{report.path}: after skipping {skipped:,} invalid record(s), {report.first_problem().message}",
            "Fix the skipped records or add more examples.",
        )
    return InvalidInput(
        f"{report.path} has {report.n_errors():,} problems (first: {report.first_error()})",
        f"Run `ftm datasets validate {report.path}` to see them all, or `ftm datasets add {report.path} "
        "--skip-invalid` to store the valid examples.",
    )


class _Lines:
    """Takes each checked Part's canonical lines into a writer, keeping what the mode keeps."""

    def __init__(self, writer: _Writer, skip_invalid: bool):
        self.writer, self.skip_invalid = writer, skip_invalid
        self.bad: list = []  # (line, first error) of every record with an error
        self.unusable: list = []  # the same, for records that are not an example at all

    def take(self, part) -> None:
        bad: dict = {}
        for line, _code, message, error in part.problems:
            if error and line is not None:
                bad.setdefault(line, message)
        kept = {n for n, _ in part.kept}
        self.bad += sorted(bad.items())
        self.unusable += [(n, why) for n, why in sorted(bad.items()) if n not in kept]
        for n, line in part.kept:
            if not (self.skip_invalid and n in bad):
                self.writer.add_line(line)


def save(path, dest_dir, fmt: str = "auto", name: str | None = None, model: str | None = None,
         check: bool = True, skip_invalid: bool = False) -> Saved:
    """Validate a dataset file and store it as canonical JSONL at dest_dir/<sha256>.jsonl.

    One read of the file does both, so what is stored is exactly what was checked.
    check=False stores data that is not for training (held-out prompts) despite training rules.
    skip_invalid stores the examples without errors and lists the others in Saved.skipped.
    """
    writer = _Writer(dest_dir)
    try:
        with Source(path) as source:
            lines = _Lines(writer, skip_invalid)
            report = check_source(source, model=model, fmt=fmt, keep=lines.take)
        report = _verdict(report, lines, writer, model, check, skip_invalid)
        sha, final, created = writer.finish()
    except BaseException:
        writer.abort()
        raise
    stem = name or shown(Path(path).name).split(".")[0]
    skipped = lines.bad if skip_invalid else []
    return Saved(sha, final, writer.n, report.format, report, stem, created, skipped)


def _verdict(report: Report, lines: _Lines, writer: _Writer, model, check: bool, skip_invalid: bool) -> Report:
    """The report to store with the data, or raise: what the mode refuses."""
    if skip_invalid and lines.bad:
        writer.file.flush()
        # what is stored, counted alone
        kept = validate(writer.tmp, model=model, fmt=canonical_format(kind_of(report.format)))
        kept.path, kept.format = report.path, report.format
        if not kept.ok:
            raise _refuse(kept, skipped=len(lines.bad))
        return kept
    if check and not report.ok:
        raise _refuse(report)
    if lines.unusable:
        n, why = lines.unusable[0]
        raise InvalidInput(f"{report.path}:{n}: {why}", "Run `ftm datasets validate` on it to see every problem.")
    return report


def split(canonical_path, fraction: float, seed: int, dest_dir, kind: str = "chat") -> tuple[Saved, Saved]:
    """(training, validation) parts of a canonical dataset of `kind`: `fraction` of it, chosen by seed."""
    fmt = canonical_format(kind)
    if not 0 < fraction < 1:
        raise InvalidInput(f"split fraction must be between 0 and 1, not {fraction}", "Use e.g. --split 0.1.")
    n = sum(1 for _ in read(canonical_path, fmt))
    k = round(n * fraction)
    if not 0 < k < n:
        raise InvalidInput(f"a {fraction} split of {n} examples leaves one side empty", "Use a larger dataset or another fraction.")
    chosen = set(random.Random(seed).sample(range(n), k))
    writers = (_Writer(dest_dir), _Writer(dest_dir))
    try:
        for i, (_, example) in enumerate(read(canonical_path, fmt)):
            writers[i in chosen].add(example)
        done = [w.finish() for w in writers]
    except BaseException:
        for w in writers:
            w.abort()
        raise
    return tuple(
        Saved(sha, final, w.n, fmt, validate(final, fmt=fmt), None, created)
        for (sha, final, created), w in zip(done, writers)
    )
