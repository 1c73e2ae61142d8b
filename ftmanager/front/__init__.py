"""The HTTP front that every OpenAI-shaped server of ftm shares (Starlette under uvicorn).

Three layers, each importing only the one before it:
  - this package: the generic HTTP part. `Server(service, routes=...)` owns the doors (the key,
    body limits, parsing, error bodies) and is handed its routes; `Hooks` is the one place a
    test double may act around each request (hooks.py).
  - `ftmanager.front.openai`: OpenAI's API surface (its routes, chat checks, job spec).
  - `ftmanager.standin`: the stand-ins, which plug in request counts, faults and /_standin/.
A `Service` behind the front decides what a job and a chat answer are: the stand-ins' move jobs
on a clock, `ftmanager.serve`'s trains them for real. Nothing here is imported by `ftm runs`.
"""

from .hooks import Drop, Hooks
from .server import Server
from .service import Service

__all__ = ["Drop", "Hooks", "Server", "Service"]
