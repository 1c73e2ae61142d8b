"""The HTTP front every OpenAI-shaped server here shares: a Starlette app served by uvicorn.

The front owns what is the same for any provider's API: the key (checked, in constant time,
before a byte of the body is read), body limits (a declared length over the limit is refused
unread; a chunked body is cut off where it passes it), parsing (JSON through orjson, forms
through python-multipart, both with every failure a 400), error bodies and server-sent events.
It is handed its routes (ftmanager.front.openai for OpenAI's); what a route means is the
provider module's, what happens to a job is the service's. A stand-in adds request counting,
faults and its /_standin/ control endpoints through hooks; `ftm serve` has none.
"""

from __future__ import annotations

import hmac
import shutil
import tempfile
from pathlib import Path

from . import router
from .hooks import Hooks
from .request import FORM_SLACK, MAX_JSON_BODY
from .service import Service
from .state import ApiError, State


class Server:
    """An OpenAI-shaped server on host:port with `service` running its jobs.

    routes: (method, compiled path pattern, fn(server, request), locked) below `prefix`
    (ftmanager.front.openai.ROUTES for OpenAI's API); error_body(ApiError) -> the JSON a client
    of that API expects for an error (default: OpenAI's shape). A Together or Fireworks
    stand-in passes its own routes, prefix and error_body and shares everything else here.
    hooks: what a stand-in adds around each request (counting, faults, control); None in production.
    """

    def __init__(self, service: Service, host: str = "127.0.0.1", port: int = 0, *,
                 api_key: str | None = None, data_dir: Path | None = None,
                 max_file_bytes: int = 512 << 20, max_part_bytes: int = 64 << 20,
                 routes: list, prefix: str = "/v1", hooks: Hooks | None = None,
                 state: State | None = None, error_body=None, pages=None):
        from . import http
        from .app import App

        self._own_dir = data_dir is None and state is None
        self.state = state or State(Path(data_dir or tempfile.mkdtemp(prefix="ftm-api-")))
        self.service, self.routes, self.api_key = service, routes, api_key
        self.prefix, self.hooks = prefix, hooks
        self.pages = pages  # an ASGI app for every path outside the API's prefix (ftm serve: the dashboard)
        if error_body is not None:
            self.error_body = error_body
        self.max_file_bytes, self.max_part_bytes = max_file_bytes, max_part_bytes
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

    def route(self, method: str, path: str):
        """(function, params, locked) for a request, or raise a 404 in OpenAI's words."""
        return router.find(self.routes, method, path, self.prefix)

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

