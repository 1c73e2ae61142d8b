"""OpenAI's API surface on the generic front: its routes, chat checks, job spec and file checks.

    Server(service, routes=ROUTES)   # OpenAI's /v1 endpoints, answered by `service`

`ftm serve` and the OpenAI and Azure stand-ins hand these routes to the front; nothing in the
generic layer (ftmanager.front) falls back to them.
"""

from .routes import ROUTES, chat

__all__ = ["ROUTES", "chat"]
