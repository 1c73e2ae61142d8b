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

from ..front.state import ApiError

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
        method, path = method or default_method, path or default_path
        if not isinstance(method, str) or not isinstance(path, str):
            raise ValueError("method and path must be strings")
        fault = Fault(kind, method.upper(), path, **extra)
        _check_numbers(fault)
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


def _check_numbers(fault: Fault) -> None:
    """A fault whose numbers are not numbers would break every request it meets: refuse it."""
    if not isinstance(fault.times, int) or isinstance(fault.times, bool) or fault.times < 1:
        raise ValueError(f"times must be a whole number of at least 1, not {fault.times!r}")
    for name in ("retry_after", "delay"):
        value = getattr(fault, name)
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 <= value <= 3600:
            raise ValueError(f"{name} must be a number of seconds from 0 to 3600, not {value!r}")


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


_ERRORS = {
    "429": (429, "Rate limit reached for requests. Please try again later.", "rate_limit_exceeded", "requests"),
    "500": (500, "The server had an error while processing your request. Sorry about that!", None, "server_error"),
    "503": (503, "The engine is currently overloaded, please try again later.", None, "server_error"),
    "401": (401, "Incorrect API key provided: sk-*****.", "invalid_api_key", "invalid_request_error"),
    # what OpenAI answers on create now that it is winding fine-tuning down
    "403": (403, "OpenAI is winding down the fine-tuning platform and your organization is no longer able "
                 "to create new fine-tuning training jobs.", "training_not_available", "invalid_request_error"),
}


def error_for(fault: Fault) -> ApiError | None:
    """The error response a fault stands for; None for faults that are not errors."""
    if fault.kind not in _ERRORS:
        return None
    status, message, code, type_ = _ERRORS[fault.kind]
    return ApiError(status, message, code=code, type=type_,
                    retry_after=fault.retry_after if fault.kind == "429" else None)
