"""validate(): every problem of a dataset file, per line, and its token statistics.

The file is streamed in blocks; for big files the blocks are checked by worker processes (one
per core) and merged in order, so memory stays flat: what grows with the file is a compact
index of example hashes (for duplicates, ~24 bytes an example) and nothing else.
"""

from __future__ import annotations

import os
from array import array
from collections import Counter as Histogram
from collections import deque
from dataclasses import dataclass, field
from hashlib import blake2b
from itertools import islice

import orjson

from ..facts import MIN_EXAMPLES, auto_epochs
from ..tempfiles import shown
from .checks import check_example
from .formats import Unconvertible, to_canonical
from .known_models import ModelInfo, model_info, resolve_epochs
from .preference import check_pair
from .report import Report
from .source import BLANK, BadLine, Source, parse_line, resolve_format, split_lines
from .tokens import choose, counter

PARALLEL_MIN_BYTES = 8 << 20  # below this, starting worker processes costs more than it saves
RECOMMENDED_EXAMPLES = 50
NO_HASH = 0  # in Part.hashes: not checked for duplicates


@dataclass(frozen=True)
class Job:
    """What a worker needs to check a block (small and picklable)."""

    fmt: str
    encoding: str
    limit: int | None
    keep: bool = False  # also hand back each example's canonical line (to store from this read)
    provider: str | None = None  # also apply this provider's rules (data.providers)


@dataclass
class Part:
    """What checking one block found, in line order."""

    problems: list = field(default_factory=list)  # (line, code, message, is_error)
    lines: array = field(default_factory=lambda: array("I"))  # per parsed example
    hashes: array = field(default_factory=lambda: array("Q"))
    tokens: array = field(default_factory=lambda: array("I"))
    trained: array = field(default_factory=lambda: array("I"))
    n_messages: array = field(default_factory=lambda: array("I"))
    n_records: int = 0
    no_system: int = 0
    kept: list = field(default_factory=list)  # (line, canonical line) when Job.keep


_COUNTERS: dict = {}  # per process: the word cache survives across blocks


def example_hash(example: dict) -> int:
    """64-bit identity of a canonical example (key order and whitespace do not matter)."""
    return _digest(orjson.dumps(example, option=orjson.OPT_SORT_KEYS))


def _digest(canonical: bytes) -> int:
    return int.from_bytes(blake2b(canonical, digest_size=8).digest(), "little")


def check_records(records, job: Job) -> Part:
    """Check (line, parsed value) pairs: the whole per-example work of validation."""
    count = _COUNTERS.get(job.encoding) or _COUNTERS.setdefault(job.encoding, counter(job.encoding))
    part = Part()
    found: list = []
    for n, value in records:
        if value is BLANK:
            part.problems.append((n, "blank_line", "blank line (skipped)", False))
            continue
        part.n_records += 1
        if type(value) is BadLine:
            part.problems.append((n, value.code, value.message, True))
            continue
        try:
            example = to_canonical(value, job.fmt)
            canonical = orjson.dumps(example, option=orjson.OPT_SORT_KEYS)
        except Unconvertible as bad:
            part.problems.append((n, bad.code, bad.message, True))
            continue
        except (orjson.JSONEncodeError, TypeError):
            part.problems.append((n, "invalid_json", "holds a value that cannot be written back as UTF-8 JSON (a lone surrogate escape?)", True))
            continue
        if "input" in example:  # a preference pair (canonical chat examples never hold "input")
            tokens, trained, n_messages, has_system = check_pair(example, found, count, job.provider)
        else:
            tokens, trained, n_messages, has_system = check_example(example, found, count)
            if job.provider and not any(error for _, _, error in found):
                _provider_problem(example, job.provider, found)
        if found:
            part.problems.extend((n, code, message, error) for code, message, error in found)
            found.clear()
        if job.limit and tokens > job.limit:
            part.problems.append((n, "too_long", f"{tokens:,} tokens, over the {job.limit:,}-token limit", False))
        part.lines.append(n)
        # records that lack messages are not the same example merely for lacking them
        part.hashes.append(_digest(canonical) if example.get("messages") or example.get("input") else NO_HASH)
        if job.keep:
            part.kept.append((n, canonical + b"\n"))
        part.tokens.append(tokens)
        part.trained.append(trained)
        part.n_messages.append(n_messages)
        part.no_system += not has_system
    return part


def _provider_problem(example: dict, provider: str, found: list) -> None:
    from .providers import problem

    why = problem(example, provider)
    if why:
        found.append(("provider_rule", why, True))


def check_block(first: int, block: bytes, job: Job) -> Part:
    """Parse and check one block of whole JSONL lines starting at line `first`."""
    return check_records(_parsed(first, block), job)


def _parsed(first: int, block: bytes):
    for n, raw in enumerate(split_lines(block), first):
        try:
            yield n, parse_line(raw)
        except BadLine as bad:
            yield n, bad


class HashIndex:
    """hash -> first line, in flat arrays (~24 bytes an entry where a dict costs ~100)."""

    def __init__(self, capacity: int = 1 << 12):
        self.keys = array("Q", bytes(8 * capacity))
        self.lines = array("I", bytes(4 * capacity))
        self.size = 0

    def _slot(self, key: int) -> int:
        """Where key lies, or the empty slot where it would go (linear probing)."""
        keys, mask = self.keys, len(self.keys) - 1
        i = key & mask
        while keys[i] and keys[i] != key:
            i = (i + 1) & mask
        return i

    def setdefault(self, key: int, line: int) -> int | None:
        """The line already stored under key, else store `line` and return None."""
        key |= 1  # 0 marks an empty slot
        i = self._slot(key)
        if self.keys[i]:
            return self.lines[i]
        self.keys[i], self.lines[i] = key, line
        self.size += 1
        if self.size * 2 > len(self.keys):
            self._grow()
        return None

    def get(self, key: int) -> int | None:
        i = self._slot(key | 1)
        return self.lines[i] if self.keys[i] else None

    def _grow(self) -> None:
        old = zip(self.keys, self.lines)
        self.__init__(len(self.keys) * 2)
        for key, line in old:
            if key:
                self.setdefault(key, line)


def _parts(source: Source, job: Job, workers: int | None):
    """Checked parts in file order: in this process, or spread over worker processes."""
    if source.is_array:
        yield check_records(source.records(), job)
        return
    n = _n_workers(source, workers)
    if n <= 1:
        for first, block in source.blocks():
            yield check_block(first, block, job)
        return
    yield from _parallel_parts(source, job, n)


def _n_workers(source: Source, workers: int | None) -> int:
    if workers is not None:
        return workers
    if source.size() < PARALLEL_MIN_BYTES:
        return 1
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    # on a busy machine workers only fight for the same cores, each warming its own word cache
    # (measured: slower than one process at load 5 on 2 cores), so use the idle cores only
    spare = cores - os.getloadavg()[0] if hasattr(os, "getloadavg") else cores
    return max(1, min(cores, 8, int(spare + 0.5)))


def _parallel_parts(source: Source, job: Job, n: int):
    import multiprocessing
    import threading
    from concurrent.futures import ProcessPoolExecutor

    # fork shares the loaded encoding and the word cache at no cost; it is unsafe only with
    # other threads running. The first block is checked here, before forking, to warm the cache.
    method = "fork" if threading.active_count() == 1 and os.name == "posix" else "spawn"
    blocks = source.blocks()
    for first, block in islice(blocks, 1):
        yield check_block(first, block, job)
    with ProcessPoolExecutor(n, mp_context=multiprocessing.get_context(method)) as pool:
        pending: deque = deque()
        for first, block in blocks:
            pending.append(pool.submit(check_block, first, block, job))
            if len(pending) >= 2 * n:  # bounded look-ahead keeps memory flat
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


@dataclass
class _Totals:
    records: int = 0
    parsed: int = 0
    no_system: int = 0
    over_limit: int = 0
    tokens: Histogram = field(default_factory=Histogram)
    trained: Histogram = field(default_factory=Histogram)
    messages: Histogram = field(default_factory=Histogram)
    seen: HashIndex = field(default_factory=HashIndex)


def _merge(part: Part, totals: _Totals, report: Report, against: tuple | None) -> None:
    for line, code, message, error in part.problems:
        report.add(line, code, message, error)
        totals.over_limit += code == "too_long"
    totals.records += part.n_records
    totals.parsed += len(part.lines)
    totals.no_system += part.no_system
    totals.tokens.update(part.tokens)
    totals.trained.update(part.trained)
    totals.messages.update(part.n_messages)
    for line, digest in zip(part.lines, part.hashes):
        if digest == NO_HASH:
            continue
        first = totals.seen.setdefault(digest, line)
        if first is not None:
            report.add(line, "duplicate", f"same example as line {first}", False)
        if against and (other := against[1].get(digest)) is not None:
            report.add(line, "overlap", f"same example as line {other} of {against[0]}", False)


def _index(path, fmt: str) -> HashIndex:
    """Hashes of every example of another file (for train/validation overlap)."""
    from .source import read

    index = HashIndex()
    for n, example in read(path, fmt):
        index.setdefault(example_hash(example), n)
    return index


def validate(path, model: str | None = None, fmt: str = "auto", against=None, workers: int | None = None,
             provider: str | None = None) -> Report:
    """Every problem of a dataset file, per line, with token statistics for `model`.

    against: another dataset file (e.g. the training set) whose examples must not reappear.
    workers: processes to check with (None: one per core for big files, 1: this process).
    provider: also apply that provider's rules (data.providers: together, fireworks).
    """
    with Source(path) as source:
        return check_source(source, model, fmt, against, workers, provider=provider)


def check_source(source: Source, model: str | None = None, fmt: str = "auto", against=None,
                 workers: int | None = None, keep=None, provider: str | None = None) -> Report:
    """validate() of an open Source; keep(part) gets each Part with its canonical lines, in
    file order, so a caller can store exactly what was checked from this one read."""
    fmt = resolve_format(source, fmt)
    info = model_info(model)
    tokenizer = choose(info.encoding)
    report = Report(path=source.name, format=fmt, model=info.name, exact_tokens=tokenizer.exact,
                    array=source.is_array)
    if source.bom:
        report.add(1, "bom", "the file starts with a UTF-8 byte-order mark (ftm strips it)", False)
    other = (shown(against), _index(against, "auto")) if against is not None else None
    job = Job(fmt, tokenizer.used, info.context_limit, keep=keep is not None, provider=provider)
    totals = _Totals()
    for part in _parts(source, job, workers):
        _merge(part, totals, report, other)
        if keep is not None:
            keep(part)
    if provider:
        from .providers import file_problems

        for code, message in file_problems(provider, totals.records, source.size(), info.min_examples):
            report.add(None, code, message, True)
    _finish(report, totals, info, tokenizer)
    return report


def _finish(report: Report, totals: _Totals, info: ModelInfo, tokenizer) -> None:
    n = totals.records
    if info.min_examples and n < info.min_examples:
        report.add(None, "too_few_examples", f"{n} example(s); {info.name} needs at least {info.min_examples}", True)
    elif not info.known and n < MIN_EXAMPLES:
        # an unknown model may be one of OpenAI's: say so without refusing a local run
        report.add(None, "too_few_examples", f"{n} example(s); OpenAI needs at least {MIN_EXAMPLES}", False)
    elif n < RECOMMENDED_EXAMPLES:
        report.add(None, "few_examples", f"only {n} examples", False)
    if totals.no_system:
        report.add(None, "no_system", f"{totals.no_system:,} of {totals.parsed:,} examples have no system message", False)
    if not info.known:
        report.add(None, "unknown_model", f"{info.name} is not in models.toml: no context limit or price", False)
    report.errors.sort(key=lambda p: p.line or 0)
    report.warnings.sort(key=lambda p: p.line or 0)
    report.stats = _stats(totals, info, tokenizer)


def _spread(hist: Histogram) -> dict | None:
    """p5/p50/p95/max/total of a histogram {value: how many}, by nearest rank."""
    n = sum(hist.values())
    if not n:
        return None
    out, rank, want = {}, 0, [("p5", 0.05), ("p50", 0.5), ("p95", 0.95)]
    for value in sorted(hist):
        rank += hist[value]
        while want and rank >= want[0][1] * n:
            out[want.pop(0)[0]] = value
    out["max"] = max(hist)
    out["min"] = min(hist)
    out["total"] = sum(v * k for v, k in hist.items())
    return out


def _stats(totals: _Totals, info: ModelInfo, tokenizer) -> dict:
    limit = info.context_limit
    per_epoch = sum(min(v, limit) * k for v, k in totals.tokens.items()) if limit else sum(v * k for v, k in totals.tokens.items())
    epochs = auto_epochs(totals.records)
    messages = _spread(totals.messages) or {"min": 0, "p50": 0, "max": 0}
    price = info.price_per_1m_train
    return {
        "examples": totals.records,
        "messages_per_example": {k: messages[k] for k in ("min", "p50", "max")},
        "tokens": _spread(totals.tokens),
        "assistant_tokens": _spread(totals.trained),
        "examples_without_system": totals.no_system,
        "model": info.name,
        "context_limit": limit,
        "examples_over_limit": totals.over_limit,
        "tokenizer": {"wanted": tokenizer.wanted, "used": tokenizer.used},
        "exact_tokens": tokenizer.exact,
        "tokens_per_epoch": per_epoch,
        "n_epochs_auto": epochs,
        "billed_tokens": per_epoch * epochs,
        "price_per_1m_train": price,
        "cost_usd": None if price is None else round(per_epoch * epochs * price / 1e6, 4),
    }


def estimate(canonical_path_or_report, model: str | None = None, n_epochs="auto") -> dict:
    """Billed tokens and cost of training `model` on a dataset (a path or a Report)."""
    report = canonical_path_or_report
    info = model_info(model)
    if not isinstance(report, Report) or not _same_counting(model_info(report.model), info):
        path = report.path if isinstance(report, Report) else report
        report = validate(path, info.name)
    s = report.stats
    epochs = resolve_epochs(n_epochs, s["examples"])
    billed = s["tokens_per_epoch"] * epochs
    price = info.price_per_1m_train
    return {
        "model": info.name,
        "n_examples": s["examples"],
        "n_epochs": epochs,
        "tokens_per_epoch": s["tokens_per_epoch"],
        "billed_tokens": billed,
        "price_per_1m_train": price,
        "cost_usd": None if price is None else round(billed * price / 1e6, 4),
        "exact": report.exact_tokens,
    }


def _same_counting(a: ModelInfo, b: ModelInfo) -> bool:
    return (a.encoding, a.context_limit) == (b.encoding, b.context_limit)
