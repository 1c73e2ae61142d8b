"""The OpenAI backend's plumbing: SDK clients, streamed upload parts, retry waits, results files."""

from __future__ import annotations

import base64
import csv
import io
import random

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


_clients: dict = {}


def sdk_client(key, base_url, organization, project, timeout, max_retries):
    """One SDK client per setting, per process: jobs.py makes a backend per poll, and a new
    client costs ~80 ms (it loads the CA bundle) and a new connection."""
    settings = (key, base_url, organization, project, timeout, max_retries)
    if settings not in _clients:
        import openai

        _clients[settings] = openai.OpenAI(api_key=key, base_url=base_url, organization=organization,
                                           project=project, timeout=timeout, max_retries=max_retries)
    return _clients[settings]


def retry_after(err) -> float | None:
    """Seconds the provider asked us to wait (retry-after-ms or retry-after), capped at 60."""
    headers = getattr(getattr(err, "response", None), "headers", {}) or {}
    for name, scale in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        try:
            return min(60.0, float(headers[name]) / scale)
        except (KeyError, ValueError, TypeError):
            continue
    return None


def backoff(attempt: int) -> float:
    """The SDK's own wait before retry n: 0.5 s doubling, capped at 8 s, with jitter."""
    return min(8.0, 0.5 * 2**attempt) * (1 - 0.25 * random.random())


def create_once(create, find, run_id: str, max_retries: int, sdk) -> str:
    """create() (a job's POST, sent without the SDK's own retries) made safe to repeat: a rate
    limit made nothing, so it waits and posts again; a lost answer or a server error may have made
    the job, so find(run_id) looks for it first. sdk: the module whose errors these are (openai,
    together: the same Stainless classes). Raises the last error when every attempt failed."""
    import time

    for attempt in range(max_retries + 1):
        try:
            return create()
        except sdk.RateLimitError as err:  # refused, so nothing was created
            last, wait = err, retry_after(err) or backoff(attempt)
        except (sdk.APIConnectionError, sdk.InternalServerError) as err:
            last = err
            time.sleep(backoff(attempt))  # give the provider a moment to list what it may have made
            found, wait = find(run_id), 0
            if found:
                return found
        if attempt < max_retries:
            time.sleep(wait)
    raise last


def metric(data: dict) -> dict:
    """A metrics event's (or checkpoint's) data under the ledger's metric names."""
    out = {_METRIC_ALIASES.get(k, k): v for k, v in data.items() if k != "total_steps" and v is not None}
    if "step" in out:
        out["step"] = int(out["step"])
    return out


def parse_results(raw: bytes) -> list[dict]:
    """Rows of a results CSV, by header name; empty cells are left out (None)."""
    text = raw.lstrip(b"\xef\xbb\xbf").strip()
    if not text.startswith(b"step"):
        text = base64.b64decode(text)
    rows = []
    for row in csv.DictReader(io.StringIO(text.decode("utf-8"))):
        values = {_METRIC_ALIASES.get(k.strip(), k.strip()): _number(v) for k, v in row.items() if k}
        if values.get("step") is None:
            continue
        values["step"] = int(values["step"])
        rows.append({k: v for k, v in values.items() if v is not None})
    return rows


def _number(cell: str | None) -> float | None:
    try:
        return float(cell) if cell not in (None, "") else None
    except ValueError:
        return None


def price_per_1m(model: str) -> float | None:
    """USD per 1M training tokens from the editable model table (None where it has no price)."""
    from ftmanager.data.models import model_info
    from ftmanager.errors import FtmError

    try:
        return model_info(model).price_per_1m_train
    except (FtmError, OSError, ValueError):  # an unreadable table: no price rather than no poll
        return None

