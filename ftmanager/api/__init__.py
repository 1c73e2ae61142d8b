"""An OpenAI-shaped HTTP server: the stand-in for tests and demos, later `ftm serve`.

    from ftmanager.api import standin
    with standin(speed=20) as server:      # a real server on 127.0.0.1, a free port
        os.environ["OPENAI_BASE_URL"] = server.url

`Server(runner, ...)` is the front; a `JobRunner` decides what running a job means
(`ClockRunner`: a clock, for the stand-in). Faults: see ftmanager.api.faults.
"""

from __future__ import annotations

from .clock import ClockRunner
from .front import Server
from .runner import JobRunner

__all__ = ["ClockRunner", "JobRunner", "Server", "standin"]


def standin(host: str = "127.0.0.1", port: int = 0, speed: float = 1.0, **options) -> Server:
    """A stand-in OpenAI server (not started: use it as a context manager, or call start())."""
    results_base64 = options.pop("results_base64", "alternate")
    return Server(ClockRunner(speed=speed, results_base64=results_base64), host, port, **options)
