"""OpenAI-shaped HTTP servers: the stand-in for tests and demos, and the front of `ftm serve`.

    from ftmanager.api import standin
    with standin(speed=20) as server:      # a real server on 127.0.0.1, a free port
        os.environ["OPENAI_BASE_URL"] = server.url

`Server(runner, ...)` is the front (Starlette under uvicorn; routes.py holds OpenAI's paths, and
another provider's stand-in passes its own `routes`, `prefix` and `error_body`); a `JobRunner`
decides what running a job means (`ClockRunner`: a clock, for the stand-in). Faults and the
/_standin/ control endpoints exist on stand-ins only: see ftmanager.api.faults and .control.
"""

from __future__ import annotations

from .clock import ClockRunner
from .front import Server
from .runner import JobRunner

__all__ = ["ClockRunner", "JobRunner", "Server", "standin"]


# provider -> the module whose standin(host, port, speed, **options) builds that provider's server
PROVIDERS = {"openai": __name__, "azure": f"{__name__}.azure", "fireworks": f"{__name__}.fireworks",
             "together": f"{__name__}.together"}


def standin(host: str = "127.0.0.1", port: int = 0, speed: float = 1.0, provider: str = "openai",
            **options) -> Server:
    """A stand-in server for provider (not started: use it as a context manager, or call start())."""
    if provider != "openai":
        import importlib

        return importlib.import_module(PROVIDERS[provider]).standin(host, port, speed, **options)
    results_base64 = options.pop("results_base64", "always")
    return Server(ClockRunner(speed=speed, results_base64=results_base64), host, port, control=True, **options)
