"""The HTTP front every OpenAI-shaped server here shares: a Starlette app served by uvicorn.

The front owns what is the same for any provider's API: the key (checked, in constant time,
before a byte of the body is read), body limits (a declared length over the limit is refused
unread; a chunked body is cut off where it passes it), parsing (JSON through orjson, forms
through python-multipart, both with every failure a 400), error bodies, the route table,
fault injection, request counting and server-sent events. What a route means is the
provider module's (routes.py for OpenAI); what happens to a job is the service's.
A stand-in also answers control requests under /_standin/ (no key); `ftm serve` does not.
"""

from __future__ import annotations

import hmac
import logging
import re
import shutil
import tempfile
import threading
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO
from urllib.parse import parse_qs, unquote

from .faults import Faults
from .service import Service
from .state import ApiError, State

MAX_JSON_BODY = 16 << 20
FORM_SLACK = 1 << 20  # a multipart body's fields and boundaries beside its file
BODY_TIMEOUT = 30.0  # seconds a client may leave a started body without sending more of it
log = logging.getLogger("ftm.api")


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
                 parts: dict[str, Part] | None, content_type: str, fault=None):
        self.method, self.path, self.query, self.params = method, path, query, params
        self.body, self.parts, self.content_type, self.fault = body, parts, content_type, fault
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


class Server:
    """An OpenAI-shaped server on host:port with `service` running its jobs.

    routes: (method, compiled path pattern, fn(server, request), locked) below `prefix`
    (default: OpenAI's, routes.ROUTES); error_body(ApiError) -> the JSON a client of that API
    expects for an error (default: OpenAI's shape). A Together or Fireworks stand-in passes
    its own routes, prefix and error_body and shares everything else here.
    control: answer the stand-in's /_standin/ requests (tests and benchmarks only).
    """

    def __init__(self, service: Service, host: str = "127.0.0.1", port: int = 0, *,
                 api_key: str | None = None, data_dir: Path | None = None,
                 max_file_bytes: int = 512 << 20, max_part_bytes: int = 64 << 20,
                 routes: list | None = None, prefix: str = "/v1", control: bool = False,
                 state: State | None = None, error_body=None):
        from . import http
        from .app import App
        from .routes import ROUTES

        self._own_dir = data_dir is None and state is None
        self.state = state or State(Path(data_dir or tempfile.mkdtemp(prefix="ftm-api-")))
        self.service, self.routes, self.api_key = service, routes or ROUTES, api_key
        self.prefix, self.control = prefix, control
        if error_body is not None:
            self.error_body = error_body
        self.max_file_bytes, self.max_part_bytes = max_file_bytes, max_part_bytes
        self.faults = Faults()
        self.requests: Counter = Counter()
        self._requests_lock = threading.Lock()
        self._http = http.Thread(App(self), http.listen(host, port), self.bad_request)
        service.bind(self.state)

    @property
    def url(self) -> str:
        """The base URL a client uses (what OPENAI_BASE_URL should be)."""
        host, port = self._http.sock.getsockname()[:2]
        return f"http://{host}:{port}{self.prefix}"

    def start(self) -> "Server":
        """Serve in a background thread (tests, benchmarks, the demo)."""
        self._http.start()
        return self

    def serve_forever(self) -> None:
        """Serve in this thread until SIGINT or SIGTERM (the CLI)."""
        self._http.run()

    def close(self) -> None:
        self._http.stop()
        self.service.close()
        if self._own_dir:
            shutil.rmtree(self.state.data_dir, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.close()

    def bad_request(self) -> dict:
        """The body of a 400 for a request that is not valid HTTP."""
        return self.error_body(ApiError(400, "We could not parse your request: it is not valid HTTP/1.1."))

    def error_body(self, err: ApiError) -> dict:
        """An error as this API's clients expect it (OpenAI's shape; a provider may differ)."""
        return err.body()

    def count(self, method: str, path: str) -> None:
        with self._requests_lock:
            self.requests[(method, path)] += 1

    def route(self, method: str, path: str):
        """(function, params, locked) for a request, or raise a 404 in OpenAI's words."""
        known = False
        for m, pattern, fn, locked in self.routes:
            match = pattern.fullmatch(path)
            if match:
                known = True
                if m == method:
                    return fn, tuple(unquote(g) for g in match.groups()), locked
        word = "Method not allowed" if known else "Invalid URL"
        raise ApiError(405 if known else 404, f"{word} ({method} {self.prefix}{path})")

    def authorize(self, headers: dict, path: str) -> None:
        """Refuse a request without the right key. A provider's front may read the key from
        another header (Azure's api-key) or leave a path open (signed download URLs)."""
        self.check_auth(headers.get("authorization", ""))

    def check_auth(self, header: str) -> None:
        """401 without a bearer key, or with the wrong one when the server has a key."""
        key = header[7:].strip() if header[:7].lower() == "bearer " else ""
        if not key:
            raise ApiError(401, "You didn't provide an API key. You need to provide your API key "
                           "in an Authorization header using Bearer auth.", code="invalid_api_key")
        if self.api_key and not hmac.compare_digest(key.encode(), self.api_key.encode()):
            shown = f"{key[:3]}*****{key[-4:]}" if len(key) > 8 else "*****"
            raise ApiError(401, f"Incorrect API key provided: {shown}.", code="invalid_api_key")

    def body_limit(self, path: str, content_type: str) -> int:
        """The most bytes a request body to path may hold."""
        if "multipart/" in content_type:
            return (self.max_part_bytes if path.endswith("/parts") else self.max_file_bytes) + FORM_SLACK
        return MAX_JSON_BODY


def route_table(rows: list, **groups: str) -> list:
    """A Server's routes from (method, "/path/{id}", fn, locked) rows: each {name} in a path
    matches groups[name], a path segment by default; the matches are the route's params."""
    groups = {"id": "([^/]+)", **groups}

    def compiled(path: str) -> re.Pattern:
        return re.compile(re.sub(r"\{(\w+)\}", lambda m: groups[m.group(1)], path))

    return [(method, compiled(path), fn, locked) for method, path, fn, locked in rows]


def parse_query(raw: bytes) -> dict:
    """A query string as {name: [values]}; undecodable bytes are replaced, never raised on."""
    return parse_qs(raw.decode("latin-1"), keep_blank_values=True)
