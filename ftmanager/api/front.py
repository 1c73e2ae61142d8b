"""The OpenAI-shaped HTTP front: a stdlib ThreadingHTTPServer on /v1, one JobRunner behind it.

The front owns what every OpenAI-compatible server here shares: auth, request framing,
error bodies, fault injection and request counting. What happens to a job is the runner's.
Control endpoints for tests and benchmarks live under /_standin/ (no auth).
"""

from __future__ import annotations

import json
import shutil
import tempfile
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from . import multipart
from .faults import Faults
from .runner import JobRunner
from .state import ApiError, State, new_id

MAX_JSON_BODY = 16 << 20
FORM_SLACK = 1 << 20  # a multipart body's fields and boundaries beside its file


class Request:
    """One parsed request as a route sees it."""

    def __init__(self, method: str, path: str, query: dict, params: tuple, body: bytes | None,
                 spooled: Path | None, content_type: str, fault=None):
        self.method, self.path, self.query, self.params = method, path, query, params
        self.body, self.spooled, self.content_type, self.fault = body, spooled, content_type, fault

    def json(self) -> dict:
        try:
            data = json.loads(self.body or b"{}")
        except ValueError:
            raise ApiError(400, "We could not parse the JSON body of your request.") from None
        if not isinstance(data, dict):
            raise ApiError(400, "The request body must be a JSON object.")
        return data

    def form(self) -> dict[str, multipart.Part]:
        boundary = multipart.boundary_of(self.content_type)
        if not self.spooled or not boundary:
            raise ApiError(400, "Expected a multipart/form-data body.")
        try:
            return multipart.parse(self.spooled, boundary)
        except ValueError as err:
            raise ApiError(400, f"Could not parse the multipart body: {err}.") from None

    def arg(self, name: str, default=None):
        return self.query.get(name, [default])[0]

    def int_arg(self, name: str, default: int, low: int = 1, high: int = 10000) -> int:
        try:
            value = int(self.arg(name, default))
        except ValueError:
            raise ApiError(400, f"Invalid value for '{name}': expected an integer.", param=name) from None
        return max(low, min(high, value))


class Raw:
    """A non-JSON response body: bytes, or a file streamed from disk."""

    def __init__(self, data: bytes | None = None, path: Path | None = None,
                 content_type: str = "application/octet-stream"):
        self.data, self.path, self.content_type = data, path, content_type


class Stream:
    """A server-sent events body: each dict `events` yields goes out as `data: <json>` when made."""

    def __init__(self, events):
        self.events = iter(events)


class Server:
    """An OpenAI-shaped server on host:port with `runner` running its jobs."""

    def __init__(self, runner: JobRunner, host: str = "127.0.0.1", port: int = 0, *,
                 api_key: str | None = None, data_dir: Path | None = None,
                 max_file_bytes: int = 512 << 20, max_part_bytes: int = 64 << 20):
        from .routes import ROUTES

        self._own_dir = data_dir is None
        self.state = State(Path(data_dir or tempfile.mkdtemp(prefix="ftm-api-")))
        self.runner, self.routes, self.api_key = runner, ROUTES, api_key
        self.max_file_bytes, self.max_part_bytes = max_file_bytes, max_part_bytes
        self.faults = Faults()
        self.requests: Counter = Counter()
        runner.bind(self.state)
        self.httpd = ThreadingHTTPServer((host, port), _handler(self))
        self.httpd.daemon_threads = True
        self._serving = False

    @property
    def url(self) -> str:
        """The base URL a client uses (what OPENAI_BASE_URL should be)."""
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}/v1"

    def start(self) -> "Server":
        """Serve in a background thread (tests, benchmarks)."""
        self._serving = True  # before the thread runs, so a quick close() still stops it
        threading.Thread(target=self.serve_forever, daemon=True).start()
        return self

    def serve_forever(self) -> None:
        self._serving = True
        self.httpd.serve_forever()

    def close(self) -> None:
        if self._serving:  # shutdown() waits for a serve_forever loop: only ask a running one
            self.httpd.shutdown()
            self._serving = False
        self.httpd.server_close()
        self.runner.close()
        if self._own_dir:
            shutil.rmtree(self.state.data_dir, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.close()

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
        raise ApiError(405 if known else 404, f"{word} ({method} /v1{path})")

    def check_auth(self, header: str) -> None:
        """401 without a bearer key, or with the wrong one when the server has a key."""
        key = header[7:].strip() if header.lower().startswith("bearer ") else ""
        if not key:
            raise ApiError(401, "You didn't provide an API key. You need to provide your API key "
                           "in an Authorization header using Bearer auth.", code="invalid_api_key")
        if self.api_key and key != self.api_key:
            shown = f"{key[:3]}*****{key[-4:]}" if len(key) > 8 else "*****"
            raise ApiError(401, f"Incorrect API key provided: {shown}.", code="invalid_api_key")


def _handler(server: Server):
    class Handler(_Handler):
        pass

    Handler.server_ref = server
    return Handler


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the SDK's connection pool expects
    disable_nagle_algorithm = True  # else headers and body in two writes wait on a delayed ACK
    server_ref: Server

    def log_message(self, format, *args):  # quiet: tests and `ftm standin` print their own
        pass

    def do_GET(self):
        self._handle("GET")

    def do_POST(self):
        self._handle("POST")

    def do_DELETE(self):
        self._handle("DELETE")

    def _handle(self, method: str) -> None:
        url = urlsplit(self.path)
        query = parse_qs(url.query, keep_blank_values=True)
        spooled = None
        try:
            body, spooled = self._read_body(url.path)
            if url.path.startswith("/_standin/"):
                from .control import control

                return self._send(200, control(self.server_ref, method, url.path, body))
            self._api(method, url.path, query, body, spooled)
        except ApiError as err:
            self._send(err.status, err.body(), self._retry_after(err))
        except (BrokenPipeError, ConnectionError):
            self.close_connection = True
        finally:
            if spooled:
                spooled.unlink(missing_ok=True)

    def _api(self, method, path, query, body, spooled) -> None:
        srv = self.server_ref
        if not path.startswith("/v1/"):
            raise ApiError(404, f"Invalid URL ({method} {path})")
        path = path[3:]
        srv.requests[(method, path)] += 1
        srv.check_auth(self.headers.get("Authorization", ""))
        fault = srv.faults.take(method, path)
        if fault and _raise_fault(fault):
            return
        if fault and fault.kind == "drop":
            self.close_connection = True
            return
        fn, params, locked = srv.route(method, path)
        req = Request(method, path, query, params, body, spooled,
                      self.headers.get("Content-Type", ""), fault)
        if locked:
            with srv.state.lock:
                result = fn(srv, req)
        else:
            result = fn(srv, req)
        self._after(fault, result)

    def _after(self, fault, result) -> None:
        if fault and fault.kind == "drop_after":
            self.close_connection = True  # the work is done; the client never hears of it
            return
        if fault and fault.kind == "slow":
            time.sleep(fault.delay)
        self._send(200, result)

    def _read_body(self, path: str) -> tuple[bytes | None, Path | None]:
        if "multipart/" in self.headers.get("Content-Type", ""):
            srv = self.server_ref
            limit = (srv.max_part_bytes if "/parts" in path else srv.max_file_bytes) + FORM_SLACK
            length = int(self.headers.get("Content-Length") or 0)
            if length > limit:  # refused before a byte is read: a huge body never reaches the disk
                self.close_connection = True  # the unread body must not be taken for a request
                raise ApiError(413, f"The request body is {length} bytes, over this server's limit of "
                               f"{limit}. Send big files through the Uploads API in parts.",
                               code="request_too_large")
            spooled = srv.state.new_path("body-")
            try:
                multipart.spool(self.rfile, self.headers, spooled, limit)
            except ValueError as err:
                spooled.unlink(missing_ok=True)
                self.close_connection = True
                raise ApiError(413, f"{err}. Send big files through the Uploads API in parts.",
                               code="request_too_large") from None
            return None, spooled
        body = b"".join(multipart.iter_body(self.rfile, self.headers))
        if len(body) > MAX_JSON_BODY:
            raise ApiError(413, "The request body is too large.")
        return body, None

    def _retry_after(self, err: ApiError) -> dict:
        seconds = getattr(err, "retry_after", None)
        if seconds is None:
            return {}
        return {"retry-after": f"{seconds:g}", "retry-after-ms": str(int(seconds * 1000))}

    def _send(self, status: int, result, headers: dict | None = None) -> None:
        if isinstance(result, Raw):
            return self._send_raw(status, result)
        if isinstance(result, Stream):
            return self._send_stream(status, result)
        data = json.dumps(result).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("x-request-id", new_id("req_", 16))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _send_raw(self, status: int, raw: Raw) -> None:
        size = len(raw.data) if raw.data is not None else raw.path.stat().st_size
        self.send_response(status)
        self.send_header("Content-Type", raw.content_type)
        self.send_header("Content-Length", str(size))
        self.end_headers()
        if raw.data is not None:
            self.wfile.write(raw.data)
            return
        with open(raw.path, "rb") as fh:
            shutil.copyfileobj(fh, self.wfile, multipart.CHUNK)


    def _send_stream(self, status: int, stream: Stream) -> None:
        # The first event is made before the status line, so an error up to then is a plain
        # error response; after it, an error can only travel as an event (the SDK raises it).
        first = next(stream.events, None)
        self.send_response(status)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("x-request-id", new_id("req_", 16))
        self.end_headers()
        try:
            for event in ([first] if first is not None else []):
                self._event(event)
            for event in stream.events:
                self._event(event)
        except ApiError as err:
            self._event(err.body())
        else:
            self._chunk(b"data: [DONE]\n\n")
        self._chunk(b"")

    def _event(self, event: dict) -> None:
        self._chunk(b"data: " + json.dumps(event).encode() + b"\n\n")

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))


_FAULT_ERRORS = {
    "429": (429, "Rate limit reached for requests. Please try again later.", "rate_limit_exceeded", "requests"),
    "500": (500, "The server had an error while processing your request. Sorry about that!", None, "server_error"),
    "503": (503, "The engine is currently overloaded, please try again later.", None, "server_error"),
    "401": (401, "Incorrect API key provided: sk-*****.", "invalid_api_key", "invalid_request_error"),
    "403": (403, "You are not allowed to create fine-tuning jobs for this organization: "
                 "self-serve fine-tuning is no longer available.", "permission_denied", "invalid_request_error"),
}


def _raise_fault(fault) -> bool:
    """Raise the error response a fault stands for; False for faults that are not errors."""
    if fault.kind not in _FAULT_ERRORS:
        return False
    status, message, code, type_ = _FAULT_ERRORS[fault.kind]
    err = ApiError(status, message, code=code, type=type_)
    if fault.kind == "429":
        err.retry_after = fault.retry_after
    raise err
