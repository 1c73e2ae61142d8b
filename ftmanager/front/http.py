"""uvicorn under the front: a listening socket, a thread to serve from, and two timeouts.

uvicorn's h11 protocol parses HTTP; ours adds what a public endpoint needs on top of it:
an unparseable request (a Content-Length of "abc", a chunk size that is not hex, headers
past 16 KB) is answered in the API's own JSON error shape rather than uvicorn's plain text,
and a connection that does not deliver a whole request head within HEAD_TIMEOUT seconds is
closed, so half-open connections cost a little memory for a few seconds and nothing more.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from typing import Callable

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from ..errors import InvalidInput

HEAD_TIMEOUT = 10.0  # seconds to send a whole request head, after connecting or after a response
LINGER = 2.0  # seconds a refused request's unread body is taken and dropped before the socket closes
KEEP_ALIVE = 5.0  # seconds an idle keep-alive connection is kept (uvicorn's default)


def listen(host: str, port: int) -> socket.socket:
    """A bound, listening TCP socket (OSError when the address is taken or not ours)."""
    if not 0 <= port <= 65535:
        raise InvalidInput(f"--port must be 0 to 65535, not {port}", "Use --port 0 for a free one.")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(256)
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def protocol(bad_request: Callable[[], dict]) -> type:
    """uvicorn's h11 protocol answering unparseable requests with bad_request()'s JSON body."""
    body = json.dumps(bad_request()).encode()
    return type("FtmHttp", (_Protocol,), {"bad_request_body": body})


class _Lingering:
    """The connection's transport, closing the way a server must when it answered before reading
    a body (a 401, a 413 for a declared length): a socket closed with unread data sends a reset,
    and the client's TCP stack may drop the answer it had not read yet. So the server first says
    it is done writing, drops whatever else arrives for LINGER seconds, then closes."""

    def __init__(self, transport, protocol: "_Protocol"):
        self._transport, self._protocol = transport, protocol

    def __getattr__(self, name):
        return getattr(self._transport, name)

    def close(self) -> None:
        if self._protocol.conn.their_state is not h11.SEND_BODY or self._transport.is_closing():
            return self._transport.close()
        self._protocol.lingering = True
        if self._transport.can_write_eof():
            self._transport.write_eof()
        self._transport.resume_reading()
        self._protocol.loop.call_later(LINGER, self._transport.close)

    def close_now(self) -> None:
        """Close without lingering (the client has read the answer and hung up)."""
        self._transport.close()


class _Protocol(H11Protocol):
    bad_request_body = b"{}"
    _head_timer: asyncio.TimerHandle | None = None
    lingering = False

    def connection_made(self, transport) -> None:
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            # asyncio sets this only on sockets made with proto IPPROTO_TCP, and listen()'s are not:
            # without it an answer written in two pieces (head, body) waits ~40 ms for a delayed ACK
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().connection_made(_Lingering(transport, self))
        self._arm_head_timer()

    def eof_received(self) -> None:
        if self.lingering:  # the client has read the answer and hung up
            self.transport.close_now()

    def data_received(self, data: bytes) -> None:
        if self.lingering:
            return  # the rest of a body the answer refused
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE:  # a whole request head has arrived
            self._cancel_head_timer()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm_head_timer()  # the next request on this connection gets its own deadline

    def connection_lost(self, exc) -> None:
        self._cancel_head_timer()
        super().connection_lost(exc)

    def send_400_response(self, msg: str) -> None:
        headers = [(b"content-type", b"application/json"), (b"connection", b"close"),
                   (b"content-length", str(len(self.bad_request_body)).encode())]
        try:
            out = self.conn.send(h11.Response(status_code=400, headers=headers, reason=b"Bad Request"))
            out += self.conn.send(h11.Data(data=self.bad_request_body)) + self.conn.send(h11.EndOfMessage())
            self.transport.write(out)
        except h11.LocalProtocolError:
            pass  # a response was already under way: closing is all that is left
        self.transport.close()

    def _arm_head_timer(self) -> None:
        self._cancel_head_timer()
        self._head_timer = self.loop.call_later(HEAD_TIMEOUT, self._head_too_slow)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_too_slow(self) -> None:
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self.transport.close()


class Thread:
    """A uvicorn server on an already listening socket, served from a daemon thread or the caller's."""

    def __init__(self, app, sock: socket.socket, bad_request: Callable[[], dict]):
        import uvicorn

        config = uvicorn.Config(app, http=protocol(bad_request), lifespan="off", log_config=None,
                                log_level="error", access_log=False, timeout_keep_alive=KEEP_ALIVE,
                                timeout_graceful_shutdown=5)
        self.sock, self.server = sock, uvicorn.Server(config)
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Serve in a daemon thread; returns once connections are being accepted."""
        self._thread = threading.Thread(target=self.run, daemon=True, name="ftm-http")
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the HTTP server did not start")
            time.sleep(0.005)

    def run(self) -> None:
        """Serve in this thread until stop() (or, in the main thread, SIGINT/SIGTERM)."""
        self.server.run(sockets=[self.sock])

    def stop(self) -> None:
        self.server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=30)
        self.sock.close()
