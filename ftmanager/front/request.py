"""What a route receives and may return: a Request read within its limits, a Raw or Stream body.

These are the generic layer's shapes, the same for every provider's API; what a route means is
the provider module's (ftmanager.front.openai for OpenAI, the stand-ins' own for the others).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO
from urllib.parse import parse_qs

from .state import ApiError

MAX_JSON_BODY = 16 << 20
FORM_SLACK = 1 << 20  # a multipart body's fields and boundaries beside its file
BODY_TIMEOUT = 30.0  # seconds a client may leave a started body without sending more of it


class ClientGone(Exception):
    """The client left before its answer was made: nobody is waiting for it."""


@dataclass
class Part:
    """One field of a multipart body: a short text value, or a file spooled by the parser."""

    name: str
    value: str | None = None
    filename: str | None = None
    file: BinaryIO | None = None
    size: int = 0


class Request:
    """One request as a route sees it: body read, JSON not yet parsed."""

    def __init__(self, method: str, path: str, query: dict, params: tuple, body: bytes | None,
                 parts: dict[str, Part] | None, content_type: str):
        self.method, self.path, self.query, self.params = method, path, query, params
        self.body, self.parts, self.content_type = body, parts, content_type
        self.gone = threading.Event()  # set when the client has left while the route runs

    def json(self) -> dict:
        import orjson  # refuses NaN, numbers past a double and nesting past 1024 levels

        try:
            data = orjson.loads(self.body or b"{}")
        except orjson.JSONDecodeError:
            raise ApiError(400, "We could not parse the JSON body of your request. (HINT: This likely "
                           "means you aren't using your HTTP library correctly.)") from None
        if not isinstance(data, dict):
            raise ApiError(400, "The request body must be a JSON object.")
        return data

    def form(self) -> dict[str, Part]:
        if self.parts is None:
            raise ApiError(400, "Expected a multipart/form-data body.")
        return self.parts

    def arg(self, name: str, default=None):
        return self.query.get(name, [default])[0]

    def int_arg(self, name: str, default: int, low: int = 1, high: int = 10000) -> int:
        raw = self.arg(name, default)
        if not str(raw).isdigit() or len(str(raw)) > 9:
            raise ApiError(400, f"Invalid value for '{name}': expected an integer.", param=name)
        return max(low, min(high, int(raw)))


class Raw:
    """A non-JSON response body: bytes, or a file streamed from disk."""

    def __init__(self, data: bytes | None = None, path: Path | None = None,
                 content_type: str = "application/octet-stream", status: int = 200, headers: dict | None = None):
        self.data, self.path, self.content_type = data, path, content_type
        self.status, self.headers = status, headers  # e.g. a redirect (Together's upload flow)


class Stream:
    """A server-sent events body: each dict `events` yields goes out as `data: <json>` when made.

    Closing `events` (a generator) is how its maker hears that the client left.
    """

    def __init__(self, events):
        self.events = iter(events)


def parse_query(raw: bytes) -> dict:
    """A query string as {name: [values]}; undecodable bytes are replaced, never raised on."""
    return parse_qs(raw.decode("latin-1"), keep_blank_values=True)
