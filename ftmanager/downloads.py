"""Files from a provider streamed to disk for `ftm pull`: one road for every backend that gives
weights, so each misbehaving provider (an error status, an HTML page, an empty, short or stalled
body, a dropped connection, a bad link, a hostile file name, more bytes than it should send) ends
in one line, and a retry resumes where a dropped download stopped when the server allows ranges.

Sizes are capped: by `ftm pull --max-size` (through capped()), else by what the provider declares
with a margin, and always by the free disk. Light at import: httpx loads on use.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import re
import shutil
import time
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

from .errors import BackendError, InvalidInput

CHUNK = 1 << 20  # the most one read can add: the free disk is checked against it
TRIES = 4  # a dropped connection or a stall is retried (resumed) this many times in all
STALL_S = 60.0  # no byte for this long is a stall; FTM_DOWNLOAD_STALL overrides
FREE_RESERVE = 64 << 20  # never fill the disk to the last byte: the ledger still writes
MAX_NAME = 255  # bytes in one path component on the usual file systems
_LIMIT: contextvars.ContextVar[int | None] = contextvars.ContextVar("ftm_max_size", default=None)
_SIZE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(?:([kmgt])(i?))?b?\s*", re.IGNORECASE)


class TooBig(BackendError):
    """What the provider sent is bigger than the cap."""


@contextlib.contextmanager
def capped(max_bytes: int | None):
    """Within it, no download or unpacked archive may exceed max_bytes (None: the default caps)."""
    token = _LIMIT.set(max_bytes)
    try:
        yield
    finally:
        _LIMIT.reset(token)


def limit() -> int | None:
    """The cap capped() set, if any."""
    return _LIMIT.get()


def parse_size(text: str) -> int:
    """'500MB', '2 GiB', '1.5g' or a number of bytes, as bytes."""
    found = _SIZE.fullmatch(text or "")
    if not found or float(found.group(1)) <= 0:
        raise InvalidInput(f"--max-size must be a size such as 500MB or 2GB, not {text!r}", "Try --max-size 20GB.")
    power = " kmgt".index((found.group(2) or " ").lower())
    return int(float(found.group(1)) * (1024 if found.group(3) else 1000) ** power)


def room(folder: Path) -> int:
    """Bytes that may still be written under folder, the disk's reserve kept free."""
    return max(0, shutil.disk_usage(folder).free - FREE_RESERVE)


def stall_s() -> float:
    """Seconds without a byte before a download counts as stalled."""
    text = os.environ.get("FTM_DOWNLOAD_STALL")
    try:
        value = float(text) if text else STALL_S
    except ValueError:
        value = -1.0
    if not 0 < value < float("inf"):
        raise InvalidInput(f"FTM_DOWNLOAD_STALL must be a number of seconds above 0, not {text!r}",
                           "Try FTM_DOWNLOAD_STALL=60.")
    return value


def safe_name(name, provider: str) -> Path:
    """A file name the provider gave, as a relative path inside the model's folder; refused when
    it is empty, '.', climbs out, holds NUL or a backslash, or a part is too long for a disk."""
    path = PurePosixPath(name) if isinstance(name, str) else None
    bad = (path is None or "\0" in name or "\\" in name or path.is_absolute() or not path.parts
           or any(p in (".", "..") for p in path.parts) or any(len(p.encode()) > MAX_NAME for p in path.parts))
    if bad:
        shown = repr(name)[:80]
        raise BackendError(f"{provider} named a file {shown}, which cannot be a file in the model's folder",
                           "Nothing was kept; tell the provider, or try `ftm pull` later.")
    return Path(*path.parts)


def check_url(url, provider: str) -> str:
    """url when it is http(s) with a host; a one-line error for anything else."""
    parts = urlsplit(url) if isinstance(url, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise BackendError(f"{provider} gave a download link that is not http(s): {str(url)[:60]!r}",
                           "Nothing was kept; try `ftm pull` again later.")
    return url


def fetch(url: str, target: Path, provider: str, headers: dict | None = None) -> Path:
    """url's body streamed to target, written under a temporary name and renamed once whole; a
    dropped connection or stall is resumed with a Range request (restarted where not allowed)."""
    import httpx

    check_url(url, provider)
    part = target.with_name(f".{target.name}.part")
    timeout = httpx.Timeout(stall_s(), connect=min(10.0, stall_s()))
    try:
        with httpx.Client(timeout=timeout, follow_redirects=True, trust_env=False) as http:
            for attempt in range(1, TRIES + 1):
                try:
                    _attempt(http, url, part, target.name, provider, headers or {})
                    break
                except (httpx.TransportError, _Retry) as err:
                    if attempt == TRIES or isinstance(err, httpx.UnsupportedProtocol):
                        tries = f"after {attempt} tries " if attempt > 1 else ""
                        raise BackendError(f"downloading {target.name} from {provider} failed {tries}({_why(err)})",
                                           "Run `ftm pull` again later.") from None
                    time.sleep(min(0.2 * 2 ** attempt, 5.0))
        part.replace(target)
    except OSError as err:
        raise BackendError(f"cannot write {target.name} from {provider} ({err.strerror or err})",
                           "Free some space, or check FTM_HOME.") from None
    finally:
        part.unlink(missing_ok=True)
    return target


class _Retry(Exception):
    """A failure that trying again can mend: a short body, a busy or failing server."""


def _attempt(http, url: str, part: Path, name: str, provider: str, headers: dict) -> None:
    have = part.stat().st_size if part.exists() else 0
    asked = {**headers, "Range": f"bytes={have}-"} if have else headers
    with http.stream("GET", url, headers=asked) as answer:
        _check_answer(answer, name, provider)
        resumed = have and answer.status_code == 206
        total = (have if resumed else 0) + int(answer.headers.get("content-length") or 0)
        _check_room(total, part.parent, name, provider)
        with open(part, "ab" if resumed else "wb") as out:
            for chunk in answer.iter_bytes():  # as it arrives: a drop keeps what came, to resume from
                out.write(chunk)
                _check_room(out.tell(), part.parent, name, provider, written=True)
            got = out.tell()
    if answer.headers.get("content-length") and got < total:
        raise _Retry(f"the body ended after {got} of {total} bytes")
    if got == 0:
        raise BackendError(f"{provider} sent {name} empty", "Nothing was kept; try `ftm pull` again later.")


def _check_answer(answer, name: str, provider: str) -> None:
    """One line for an error status or a web page where a file should be."""
    if answer.status_code in (429, 500, 502, 503, 504):
        raise _Retry(f"HTTP {answer.status_code}")
    if answer.status_code not in (200, 206):
        hint = {401: "Check the provider's API key.", 403: "Check the key's permissions; signed links expire: "
                "run `ftm pull` again.", 404: "Check the run with `ftm show`: the provider has no such file."}
        raise BackendError(f"downloading {name} from {provider} failed (HTTP {answer.status_code})",
                           hint.get(answer.status_code, "Run `ftm pull` again later."))
    kind = answer.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind in ("text/html", "application/xhtml+xml"):
        raise BackendError(f"{provider} answered the download of {name} with a web page ({kind}), not the file",
                           "Check the provider's base URL, then run `ftm pull` again.")


def _check_room(size: int, folder: Path, name: str, provider: str, written: bool = False) -> None:
    cap = limit()
    if cap is not None and size > cap:
        raise TooBig(f"{name} from {provider} is {'over ' if written else ''}{size} bytes, past --max-size ({cap} bytes)",
                     "Nothing was kept; raise --max-size if you expect it.")
    if (size if not written else CHUNK) > room(folder):
        raise TooBig(f"{name} from {provider} does not fit on the disk ({size} bytes so far)",
                     "Nothing was kept; free some space and run `ftm pull` again.")


def _why(err) -> str:
    return str(err) or type(err).__name__
