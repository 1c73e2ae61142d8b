"""Stand-ins for the providers' fine-tuning APIs, for tests and demos: nothing is trained.

    from ftmanager.standin import standin
    with standin(speed=20) as server:      # a real server on 127.0.0.1, a free port
        os.environ["OPENAI_BASE_URL"] = server.url

Each stand-in is the shared front with the stand-in's hooks plugged in (`StandinServer`:
request counts, injected faults and the /_standin/ control endpoints, standin_server.py, faults.py,
control.py), a clock behind it (`ClockService`: jobs move through the provider's statuses on a
clock) and that provider's routes (OpenAI's from ftmanager.front.openai; azure.py, fireworks.py
and together/ bring theirs). `ftm serve` builds the front without these hooks.
"""

from __future__ import annotations

from ..front.openai import ROUTES
from ..front.service import Service
from .clock import ClockService
from .standin_server import StandinServer

Server = StandinServer  # the name tests and callers have used for a stand-in's server

__all__ = ["ClockService", "Service", "Server", "StandinServer", "standin"]


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
    return StandinServer(ClockService(speed=speed, results_base64=results_base64), host, port, routes=ROUTES,
                         **options)
