"""The dashboard as a Starlette application: one page of static assets and a JSON API over the ledger.

make_app() builds it; `ftm ui` serves it with uvicorn, and another server can mount it whole
(Starlette's Mount("/", app=make_app(...)) after its own routes). Every API error is one JSON
line in OpenAI's error shape; nothing of a traceback or a server path reaches the page.
"""

from __future__ import annotations

import json
import sys
import traceback
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from ..errors import FtmError, LedgerError, NotFound
from . import api
from .guard import LOOPBACK, Guard

STATIC = Path(__file__).parent / "static"
MAX_BODY = 1 << 20


def make_app(key: str | None = None, loopback_only: bool = True) -> Guard:
    """The dashboard over the ledger of this process's FTM_HOME.

    key: off loopback, the key a login form asks for once (None: no login).
    loopback_only: answer only requests whose Host is a loopback name (refuses DNS rebinding).
    """
    routes = [
        Route("/api/health", _get(lambda q: api.health())),
        Route("/api/runs", _get(_runs_page)),
        Route("/api/facets", _get(lambda q: api.views().facets())),
        Route("/api/status", _get(lambda q: {"runs": api.views().statuses(_ids(q))})),
        Route("/api/runs/{run_id}", _get(lambda q, run_id: api.run_detail(run_id))),
        Route("/api/runs/{run_id}/curves", _get(lambda q, run_id: api.curves(run_id, _int(q.get("points"), 1000)))),
        Route("/api/runs/{run_id}/{action}", _post(lambda body, run_id, action: api.act(run_id, action)), methods=["POST"]),
        Route("/api/compare", _get(lambda q: api.compare(_ids(q)))),
        Route("/api/datasets", _get(lambda q: {"datasets": api.datasets()})),
        Route("/api/datasets/{ref}", _get(lambda q, ref: api.dataset_detail(ref))),
        Route("/api/models", _get(lambda q: api.models())),
        Route("/api/chat", _post(lambda body: api.chat(body)), methods=["POST"]),
        Route("/api/{rest:path}", _no_such_api, methods=["GET", "POST"]),
        Mount("/static", app=StaticFiles(directory=STATIC)),
        Route("/", _page),
        Route("/{rest:path}", _page),
    ]
    app = Starlette(routes=routes)
    return Guard(app, key=key, hosts=LOOPBACK if loopback_only else None)


def _runs_page(q) -> dict:
    filters = {name: q.get(name) for name in ("backend", "status", "base_model", "dataset", "method", "since", "until")}
    return api.views().runs_page(filters, sort=q.get("sort") or "created", desc=q.get("desc", "1") != "0",
                                 limit=_int(q.get("limit"), 100), offset=_int(q.get("offset"), 0))


def _ids(q) -> list[str]:
    return [i for i in (q.get("ids") or "").split(",") if i]


def _int(text, default: int) -> int:
    try:
        return int(text) if text not in (None, "") else default
    except ValueError:
        raise FtmError(f"{text!r} is not a whole number", "") from None


def _page(request: Request) -> Response:
    """The single page; its script reads the address and asks the API for what it shows."""
    return FileResponse(STATIC / "index.html", headers={"cache-control": "no-store"})


async def _no_such_api(request: Request) -> Response:
    return _error(404, "not_found", "no such API path. The dashboard's own pages use the others.")


def _get(fn):
    """A GET endpoint: fn(query, **path params) in a worker thread (SQLite blocks), errors as one line."""
    from starlette.concurrency import run_in_threadpool

    async def endpoint(request: Request) -> Response:
        return await _answered(run_in_threadpool, fn, dict(request.query_params), **request.path_params)
    return endpoint


def _post(fn):
    """A POST endpoint taking a JSON object body (a form cannot send one without a CORS preflight)."""
    from starlette.concurrency import run_in_threadpool

    async def endpoint(request: Request) -> Response:
        if "application/json" not in request.headers.get("content-type", ""):
            return _error(415, "invalid_request_error", "send the body as application/json, as the dashboard does.")
        raw = await request.body()
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            body = None
        if len(raw) > MAX_BODY or not isinstance(body, dict):
            return _error(400, "invalid_request_error", "the body must be one JSON object under 1 MB, as the dashboard sends.")
        return await _answered(run_in_threadpool, fn, body, **request.path_params)
    return endpoint


async def _answered(runner, fn, arg, **params) -> Response:
    try:
        return _json(await runner(fn, arg, **params))
    except LedgerError as err:
        return _error(503, "ledger_error", err.line())
    except NotFound as err:
        return _error(404, "not_found", err.line())
    except FtmError as err:
        return _error(400, "invalid_request_error", err.line())
    except Exception as err:  # noqa: BLE001  (the page gets one line; the console keeps the traceback)
        traceback.print_exc(file=sys.stderr)
        return _error(500, "server_error", f"the dashboard failed ({type(err).__name__}). See the console of `ftm ui` for the details.")


def _json(obj, status: int = 200) -> Response:
    """orjson: fast on a page of curves, and a NaN loss becomes null rather than invalid JSON."""
    import orjson

    return Response(orjson.dumps(obj, default=str), status_code=status, media_type="application/json",
                    headers={"cache-control": "no-store"})


def _error(status: int, kind: str, message: str) -> Response:
    return _json({"error": {"message": " ".join(message.split()), "type": kind}}, status)
