"""The ASGI side of the front: one request read within its limits, its route run in a worker
thread, and the answer sent, with every failure an error in the API's shape.

The order is the point: route and key are checked from the headers alone; a declared length
over the limit is refused unread (and the connection closed, so the unread body is never
taken for a request); only then is the body read, each piece within BODY_TIMEOUT seconds
and cut off where it passes the limit. Multipart files are spooled by python-multipart into
anonymous temporary files, which vanish when closed, on every path out.
"""

from __future__ import annotations

import asyncio
import json
import logging

import anyio
from starlette.formparsers import MultiPartException
from starlette.requests import ClientDisconnect, Request as HttpRequest
from starlette.responses import FileResponse, Response, StreamingResponse
from starlette.datastructures import UploadFile

from .hooks import Drop
from .request import BODY_TIMEOUT, MAX_JSON_BODY, ClientGone, Part, Raw, Request, Stream, parse_query
from .state import ApiError, new_id

log = logging.getLogger("ftm.api")
_END = object()
SERVER_ERROR = "The server had an error while processing your request. Sorry about that!"


class _TooLarge(Exception):
    pass


class App:
    """The ASGI application of one Server."""

    def __init__(self, server):
        self.srv = server

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return
        if self.srv.pages is not None and not self._api(scope["path"]):
            return await self.srv.pages(scope, receive, send)
        try:
            response = await self._answer(scope, receive)
        except ApiError as err:
            response = error_response(err, self.srv)
        except Drop:
            return await _drop(send)
        except (ClientDisconnect, ClientGone):
            return
        except Exception:  # noqa: BLE001 - a client hears OpenAI's 500, never our traceback
            log.exception("unexpected error answering %s %s", scope["method"], scope["path"])
            response = error_response(ApiError(500, SERVER_ERROR, type="server_error"), self.srv)
        await response(scope, receive, send)

    def _api(self, path: str) -> bool:
        """Whether path is the API's (or the stand-ins' control), not the pages beside it."""
        hooks = self.srv.hooks
        control = hooks is not None and hooks.control_prefix and path.startswith(hooks.control_prefix)
        return bool(control) or path.startswith(self.srv.prefix + "/")

    async def _answer(self, scope, receive) -> Response:
        srv, method, path = self.srv, scope["method"], scope["path"]
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        hooks = srv.hooks
        if hooks is not None and hooks.control_prefix and path.startswith(hooks.control_prefix):
            return await self._control(scope, receive, headers, method, path)
        if not path.startswith(srv.prefix + "/"):
            raise ApiError(404, f"Invalid URL ({method} {path})")
        path = path[len(srv.prefix):]
        if hooks is not None:
            hooks.seen(method, path)
        srv.authorize(headers, path)  # from the headers alone: no byte of the body is read before
        note = hooks.before(method, path) if hooks is not None else None
        result = await self._route(scope, receive, headers, path, srv.route(method, path))
        if hooks is not None:
            result = await hooks.after(srv, note, result)
        return await respond(result)

    async def _route(self, scope, receive, headers, path: str, route: tuple):
        """The route's result for a request whose body is read here, within its limit."""
        srv, (fn, params, locked) = self.srv, route
        ctype = headers.get("content-type", "")
        body, form = await _read(scope, receive, headers, srv.body_limit(path, ctype))
        try:
            req = Request(scope["method"], path, parse_query(scope["query_string"]), params, body,
                          _parts(form), ctype)
            return await _run(srv, fn, req, locked, receive)
        finally:
            if form is not None:
                await form.close()

    async def _control(self, scope, receive, headers, method, path) -> Response:
        body, _ = await _read(scope, receive, headers, MAX_JSON_BODY)
        answer = await anyio.to_thread.run_sync(self.srv.hooks.control, self.srv, method, path, body)
        return json_response(answer)


async def _run(srv, fn, req, locked: bool, receive):
    """The route's result, run in a worker thread while a watcher notes a client that leaves."""
    failure = None
    async with anyio.create_task_group() as watch:
        watch.start_soon(_notice_leaving, receive, req.gone)
        try:
            result = await anyio.to_thread.run_sync(_call, srv, fn, req, locked)
        except Exception as err:  # noqa: BLE001 - raised below, outside the group (it would wrap it)
            failure = err
        watch.cancel_scope.cancel()
    if failure is not None:
        raise failure
    return result


async def _notice_leaving(receive, gone) -> None:
    """Set gone when the client disconnects (the body is read by now: nothing else arrives)."""
    while (await receive())["type"] != "http.disconnect":
        pass
    gone.set()


def _call(srv, fn, req, locked: bool):
    if locked:
        with srv.state.lock:
            return fn(srv, req)
    return fn(srv, req)


async def _read(scope, receive, headers: dict, limit: int):
    """(body bytes, None) or (None, a parsed multipart form), read within limit and time."""
    declared = headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:  # refused before a byte is read
        raise _too_large(int(declared), limit)
    request = HttpRequest(scope, _Guarded(receive, limit))
    try:
        if headers.get("content-type", "").lower().startswith("multipart/form-data"):
            return None, await request.form(max_files=4, max_fields=16, max_part_size=64 << 10)
        return b"".join([chunk async for chunk in request.stream()]), None
    except _TooLarge:
        raise _too_large(None, limit) from None
    except TimeoutError:
        raise ApiError(408, f"The request body did not arrive within {BODY_TIMEOUT:g} seconds.",
                       code="request_timeout", close=True) from None
    except (MultiPartException, KeyError, ValueError):
        raise ApiError(400, "Could not parse the multipart/form-data body.") from None


def _too_large(declared: int | None, limit: int) -> ApiError:
    size = f"{declared} bytes" if declared is not None else f"over {limit} bytes"
    return ApiError(413, f"The request body is {size}, over this server's limit of {limit}. Send big "
                    "files through the Uploads API in parts.", code="request_too_large", close=True)


class _Guarded:
    """A receive() that gives up after BODY_TIMEOUT seconds of silence and past limit bytes."""

    def __init__(self, receive, limit: int):
        self.receive, self.limit, self.seen = receive, limit, 0

    async def __call__(self):
        with anyio.fail_after(BODY_TIMEOUT):
            message = await self.receive()
        self.seen += len(message.get("body", b""))
        if self.seen > self.limit:
            raise _TooLarge
        return message


def _parts(form) -> dict[str, Part] | None:
    if form is None:
        return None
    parts = {}
    for name, value in form.multi_items():
        if isinstance(value, UploadFile):
            parts[name] = Part(name, filename=value.filename, file=value.file, size=value.size or 0)
        else:
            parts[name] = Part(name, value=value)
    return parts


# --- answers -------------------------------------------------------------------------------


def json_response(data, status: int = 200, headers: dict | None = None) -> Response:
    body = json.dumps(data).encode()
    return Response(body, status, {"x-request-id": new_id("req_", 16), **(headers or {})},
                    media_type="application/json")


def error_response(err: ApiError, srv) -> Response:
    headers = {}
    if err.retry_after is not None:
        headers = {"retry-after": f"{err.retry_after:g}", "retry-after-ms": str(int(err.retry_after * 1000))}
    if err.close:
        headers["connection"] = "close"  # the unread body must not be taken for the next request
    return json_response(srv.error_body(err), err.status, headers)


async def respond(result) -> Response:
    if isinstance(result, Raw):
        if result.data is not None:
            return Response(result.data, result.status, result.headers, media_type=result.content_type)
        return FileResponse(result.path, headers=result.headers, media_type=result.content_type)
    if isinstance(result, Stream):
        return await _event_stream(result.events)
    return json_response(result)


async def _event_stream(events) -> Response:
    # The first event is made before the status line, so an error up to then is a plain
    # error response; after it, an error can only travel as an event (the SDK raises it).
    try:
        first = await anyio.to_thread.run_sync(next, events, _END)
    except BaseException:
        await _close(events)
        raise
    return _Events(_sse(events, first), media_type="text/event-stream",
                   headers={"cache-control": "no-cache", "x-request-id": new_id("req_", 16)})


async def _sse(events, first):
    try:
        item = first
        while item is not _END:
            yield b"data: " + json.dumps(item).encode() + b"\n\n"
            item = await anyio.to_thread.run_sync(next, events, _END)
        yield b"data: [DONE]\n\n"
    except ApiError as err:
        yield b"data: " + json.dumps(err.body()).encode() + b"\n\n"
    except Exception:  # noqa: BLE001
        log.exception("unexpected error in a streamed answer")
        yield b"data: " + json.dumps(ApiError(500, SERVER_ERROR, type="server_error").body()).encode() + b"\n\n"
    finally:
        await _close(events)


async def _close(events) -> None:
    """Close the events' generator in a thread: it tells the maker to stop (the client left)."""
    close = getattr(events, "close", None)
    if close is not None:
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(close)


class _Events(StreamingResponse):
    """A streamed response whose generator is closed however the stream ends (a client gone too)."""

    async def __call__(self, scope, receive, send) -> None:
        try:
            await super().__call__(scope, receive, send)
        except (ClientDisconnect, OSError):
            pass
        finally:
            await self.body_iterator.aclose()


async def _drop(send) -> None:
    """Close the connection with no answer at all (uvicorn's cycle holds the transport)."""
    transport = getattr(getattr(send, "__self__", None), "transport", None)
    if transport is None:  # another server: an answer cut off after its status line
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"1")]})
        raise ConnectionAbortedError("dropped on purpose")
    transport.close()
    await asyncio.sleep(0)  # let the server see the connection gone before this returns
