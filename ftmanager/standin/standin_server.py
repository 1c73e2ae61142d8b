"""What a stand-in adds to the generic front: request counting, injected faults, /_standin/.

`StandinServer` is the front with these hooks plugged in; every stand-in is one. `ftm serve`
builds the plain front (hooks=None), so none of this runs on its requests.
"""

from __future__ import annotations

import threading
from collections import Counter

import anyio

from ..front.hooks import Drop, Hooks
from ..front.server import Server
from .faults import Faults, error_for


class StandinHooks(Hooks):
    """Counts every request by (method, path) and plays the faults a test queued."""

    control_prefix = "/_standin/"

    def __init__(self):
        self.faults = Faults()
        self.requests: Counter = Counter()
        self._lock = threading.Lock()

    def seen(self, method: str, path: str) -> None:
        with self._lock:
            self.requests[(method, path)] += 1

    def before(self, method: str, path: str):
        """The fault for this request (used up), raised here when it strikes before the route."""
        fault = self.faults.take(method, path)
        if fault is None:
            return None
        err = error_for(fault)
        if err is not None:
            raise err
        if fault.kind == "drop":
            raise Drop
        return fault

    async def after(self, server, fault, result):
        if fault is None:
            return result
        if fault.kind == "drop_after":
            raise Drop  # the work is done; the client never hears of it
        if fault.kind == "slow":
            await anyio.sleep(fault.delay)
        if fault.kind == "empty_error" and isinstance(result, dict) and result.get("id") in server.state.jobs:
            with server.state.lock:  # the job reports "error": {} from now on, as some providers do
                server.state.jobs[result["id"]].error = {}
            result = {**result, "error": {}}
        return result

    def control(self, server, method: str, path: str, body: bytes | None) -> dict:
        from .control import control

        return control(server, self, method, path, body)


class StandinServer(Server):
    """The generic front with the stand-in's hooks: faults and request counts reachable from tests."""

    def __init__(self, service, host: str = "127.0.0.1", port: int = 0, **options):
        super().__init__(service, host, port, hooks=StandinHooks(), **options)

    @property
    def faults(self) -> Faults:
        """The faults waiting to happen (add, clear, pending)."""
        return self.hooks.faults

    @property
    def requests(self) -> Counter:
        """API requests received so far, by (method, path below the prefix)."""
        return self.hooks.requests
