"""The HTTP front that every OpenAI-shaped server of ftm shares (Starlette under uvicorn).

`Server(service, ...)` owns the doors (the key, body limits, parsing, error bodies, routes,
faults); a `Service` behind it decides what a job and a chat answer are: `ftmanager.standin`'s
services move jobs on a clock, `ftmanager.serve`'s trains them for real. Nothing here is
imported by `ftm runs`.
"""

from .server import Server
from .service import Service

__all__ = ["Server", "Service"]
