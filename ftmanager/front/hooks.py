"""The one place a test double may act around each request; `ftm serve` plugs in nothing.

A Server built with hooks=None (the production path) neither counts requests nor consults
faults. The stand-ins (ftmanager.standin.standin_server) plug in counting, injected faults
and their /_standin/ control endpoints through a Hooks subclass.
"""

from __future__ import annotations


class Drop(Exception):
    """Close the connection without answering (a fault a stand-in injects)."""


class Hooks:
    """Called by the front around each API request; every method here does nothing."""

    control_prefix: str | None = None  # requests under this path are control(), with no key and no prefix

    def seen(self, method: str, path: str) -> None:
        """A request below the prefix arrived (called before its key is checked)."""

    def before(self, method: str, path: str):
        """After the key check, before the route and the body: raise ApiError or Drop to refuse
        the request; whatever is returned is handed to after()."""
        return None

    async def after(self, server, note, result):
        """After the route ran: the result to answer with (raise Drop to answer nothing)."""
        return result

    def control(self, server, method: str, path: str, body: bytes | None) -> dict:
        """The JSON answer to a request under control_prefix."""
        raise NotImplementedError
