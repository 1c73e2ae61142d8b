"""The OpenAI backend's file plumbing: upload parts streamed from disk, and results files read
back under the ledger's metric names."""

from __future__ import annotations

import base64
import csv
import io

from ftmanager.figures import number

# Metric names as the ledger keeps them: OpenAI's events say train_mean_token_accuracy where
# its results file says train_accuracy; both are the same number.
_METRIC_ALIASES = {"train_mean_token_accuracy": "train_accuracy"}


class FileWindow(io.RawIOBase):
    """length bytes of a file from offset, as a seekable stream: the SDK sends it in small
    chunks (re-reading from the start on a retry), so a 64 MB part never sits in memory."""

    def __init__(self, path, offset: int, length: int):
        self._fh, self._start, self._length, self._pos = open(path, "rb"), offset, length, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, pos: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._length}[whence]
        self._pos = max(0, min(self._length, base + pos))
        return self._pos

    def tell(self) -> int:
        return self._pos

    def readinto(self, buffer) -> int:
        n = min(len(buffer), self._length - self._pos)
        if n <= 0:
            return 0
        self._fh.seek(self._start + self._pos)
        got = self._fh.readinto(memoryview(buffer)[:n])
        self._pos += got
        return got

    def close(self) -> None:
        self._fh.close()
        super().close()


def metric(data: dict) -> dict:
    """A metrics event's (or checkpoint's) data under the ledger's metric names. Every key is kept
    (a DPO job's figures beside the loss, as OpenAI names them): the ledger keeps what is a number."""
    out = {_METRIC_ALIASES.get(k, k): v for k, v in data.items() if k != "total_steps" and v is not None}
    if "step" in out:
        step = number(out["step"])  # a step that is not a whole number is no step: the ledger skips it
        out["step"] = int(step) if step is not None and step.is_integer() else None
    return out


def parse_results(raw: bytes) -> list[dict]:
    """Rows of a results CSV, by header name; empty cells are left out (None)."""
    text = raw.lstrip(b"\xef\xbb\xbf").strip()
    if not text.startswith(b"step"):
        text = base64.b64decode(text)
    rows = []
    for row in csv.DictReader(io.StringIO(text.decode("utf-8"))):
        values = {_METRIC_ALIASES.get(k.strip(), k.strip()): _number(v) for k, v in row.items() if k}
        step = number(values.get("step"))
        if step is None or not step.is_integer():
            continue
        values["step"] = int(step)
        rows.append({k: v for k, v in values.items() if v is not None})
    return rows


def _number(cell: str | None) -> float | None:
    try:
        return float(cell) if cell not in (None, "") else None
    except ValueError:
        return None
