"""Faults the stand-in injects on request, so clients can be tested against a flaky provider.

A fault matches requests by method and path (fnmatch, below /v1) and is used up after
`times` matches. Kinds:

  429          rate limited, with retry-after (seconds; `retry_after=`) and retry-after-ms
  500, 503     a server error
  401, 403     authentication / permission refused (403 defaults to POST /fine_tuning/jobs)
  drop         close the connection before doing anything
  drop_after   do the request (e.g. create the job), then close without answering
  slow         do the request, then wait `delay=` seconds before answering
  empty_error  the next job created reports `"error": {}` (an empty object: no error)

From the command line: `ftm standin --fault "429 POST /fine_tuning/jobs times=2 retry_after=1"`;
at run time: POST /_standin/faults with the same fields as JSON; DELETE /_standin/faults clears.
"""

from __future__ import annotations

import fnmatch
import threading
from dataclasses import asdict, dataclass

KINDS = ("429", "500", "503", "401", "403", "drop", "drop_after", "slow", "empty_error")
# Where a fault applies when the request does not say: these two only make sense on create.
_DEFAULT_TARGET = {"403": ("POST", "/fine_tuning/jobs"), "empty_error": ("POST", "/fine_tuning/jobs")}


@dataclass
class Fault:
    """One fault waiting to happen to the next `times` requests that match."""

    kind: str
    method: str = "*"
    path: str = "*"
    times: int = 1
    retry_after: float = 1.0
    delay: float = 5.0

    def matches(self, method: str, path: str) -> bool:
        return self.method in ("*", method) and fnmatch.fnmatchcase(path, self.path)


class Faults:
    """The faults waiting to happen, in the order they were added."""

    def __init__(self):
        self._lock = threading.Lock()
        self._faults: list[Fault] = []

    def add(self, kind: str, method: str | None = None, path: str | None = None, **extra) -> Fault:
        """Queue a fault; raises ValueError for an unknown kind or field."""
        kind = str(kind)
        if kind not in KINDS:
            raise ValueError(f"unknown fault {kind!r}; kinds: {', '.join(KINDS)}")
        default_method, default_path = _DEFAULT_TARGET.get(kind, ("*", "*"))
        fault = Fault(kind, (method or default_method).upper(), path or default_path, **extra)
        with self._lock:
            self._faults.append(fault)
        return fault

    def take(self, method: str, path: str) -> Fault | None:
        """The first fault matching this request, used up once."""
        with self._lock:
            for fault in self._faults:
                if fault.matches(method, path):
                    fault.times -= 1
                    if fault.times <= 0:
                        self._faults.remove(fault)
                    return fault
        return None

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def pending(self) -> list[dict]:
        with self._lock:
            return [asdict(f) for f in self._faults]


def parse(text: str) -> dict:
    """'429 POST /fine_tuning/jobs times=2 retry_after=1' -> the fields of Faults.add."""
    words = text.split()
    if not words:
        raise ValueError("an empty fault")
    spec: dict = {"kind": words[0]}
    for word in words[1:]:
        if "=" in word:
            key, value = word.split("=", 1)
            spec[key] = int(value) if key == "times" else float(value)
        elif word.startswith("/"):
            spec["path"] = word
        else:
            spec["method"] = word
    return spec
