"""The stand-in's control endpoints under /_standin/, for tests and benchmarks (no auth).

`ftm standin` answers them (through StandinHooks); `ftm serve` has none (its front has no hooks).

  POST   /_standin/faults     {"kind": "429", "method": "POST", "path": "/fine_tuning/jobs", ...}
  GET    /_standin/faults     the faults still waiting
  DELETE /_standin/faults     clear them
  GET    /_standin/requests   API requests received, by "METHOD /path"; DELETE resets the count
  GET    /_standin/jobs/ID    {"status", "terminal_at"}: the exact moment a job finished
  POST   /_standin/config     {"speed": 20, "results_base64": "always|never|alternate",
                               "max_file_bytes": N}
"""

from __future__ import annotations

import json

from ..front.state import ApiError


def control(server, hooks, method: str, path: str, body: bytes | None):
    """Answer one control request; returns the JSON body."""
    name = path[len("/_standin/"):]
    try:
        data = json.loads(body) if body else {}
    except ValueError:
        raise ApiError(400, "The control request's body is not JSON.") from None
    if not isinstance(data, dict):
        raise ApiError(400, "The control request's body must be a JSON object.")
    if name == "faults":
        return _faults(hooks, method, data)
    if name == "requests":
        if method == "DELETE":
            hooks.requests.clear()
        counts = {f"{m} {p}": n for (m, p), n in hooks.requests.items()}
        return {"total": sum(counts.values()), "by_route": counts}
    if name.startswith("jobs/"):
        with server.state.lock:
            job = server.state.job(name[5:])
            server.service.refresh(job)
            terminal_at = getattr(server.service, "terminal_at", lambda _: None)(job.id)
            return {"id": job.id, "status": job.status, "terminal_at": terminal_at}
    if name == "config" and method == "POST":
        return _config(server, data)
    raise ApiError(404, f"Invalid URL ({method} {path})")


def _faults(hooks, method: str, data: dict):
    if method == "DELETE":
        hooks.faults.clear()
    elif method == "POST":
        try:
            hooks.faults.add(**data)
        except (TypeError, ValueError) as err:
            raise ApiError(400, str(err)) from None
    return {"faults": hooks.faults.pending()}


def _config(server, data: dict) -> dict:
    service = server.service
    numbers = [data.get("speed", 1), data.get("max_file_bytes", 1), *(data.get("phases") or {}).values()]
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 for v in numbers):
        raise ApiError(400, "speed, phases and max_file_bytes must be numbers above 0.")
    if "speed" in data:
        with server.state.lock:
            for job in server.state.jobs.values():
                service.refresh(job)  # play the clock up to now at the old speed
            service.speed = float(data["speed"])
    if "phases" in data:  # seconds per phase at speed 1: validating_files, queued, step
        service.phases.update({k: float(v) for k, v in data["phases"].items()})
    if "results_base64" in data:
        service.results_base64 = data["results_base64"]
    if "max_file_bytes" in data:
        server.max_file_bytes = int(data["max_file_bytes"])
    return {"speed": getattr(service, "speed", None), "max_file_bytes": server.max_file_bytes}
