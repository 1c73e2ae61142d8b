"""A stand-in reached the way Azure OpenAI is: the OpenAI stand-in's routes below /openai, each
request carrying an `api-version` query, the key in an `api-key` header, and chat sent to
/openai/deployments/{deployment}/chat/completions (what the openai SDK's AzureOpenAI calls).
"""

from __future__ import annotations

import re

from .clock import ClockService
from ..front.openai import ROUTES, chat
from ..front.state import ApiError
from .standin_server import StandinServer


def _versioned(fn):
    """A route that, as Azure does, knows no resource without an api-version."""
    def route(srv, req):
        version = req.arg("api-version")
        if not version:
            raise ApiError(404, "Resource not found", code="404")
        srv.api_versions.add(version)
        return fn(srv, req)
    return route


AZURE_ROUTES = [(m, p, _versioned(fn), locked) for m, p, fn, locked in
                [*ROUTES, ("POST", re.compile(r"/deployments/([^/]+)/chat/completions"), chat, False)]]


class AzureServer(StandinServer):
    """The OpenAI stand-in at Azure's paths; its url is what AZURE_OPENAI_ENDPOINT should be."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.api_versions: set[str] = set()  # every api-version a client sent

    @property
    def url(self) -> str:
        return super().url[: -len(self.prefix)]

    def authorize(self, headers: dict, path: str) -> None:
        key = headers.get("api-key")
        self.check_auth(f"Bearer {key}" if key else headers.get("authorization", ""))


def standin(host: str = "127.0.0.1", port: int = 0, speed: float = 1.0, **options) -> AzureServer:
    """A stand-in Azure OpenAI server (not started: use it as a context manager, or call start())."""
    service = ClockService(speed=speed, results_base64=options.pop("results_base64", "always"))
    return AzureServer(service, host, port, routes=AZURE_ROUTES, prefix="/openai", **options)
