"""Serving the dashboard: a listening socket, uvicorn on it, and the loop that keeps runs moving."""

from __future__ import annotations

import ipaddress
import socket
import threading

from ..errors import InvalidInput


def is_loopback(host: str) -> bool:
    """Whether host is this machine only (then no key is asked and only a loopback Host is served)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def listen(host: str, port: int) -> tuple[socket.socket, str]:
    """A socket already listening on host:port (0: a free port), and the dashboard's address on it."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(128)  # before the address is printed: whoever reads it can connect at once
    except OSError as err:
        sock.close()
        raise InvalidInput(f"cannot listen on {host}:{port} ({err.strerror})",
                           "Pick another with --port, or --port 0 for a free one.") from None
    shown = f"[{host}]" if ":" in host else host
    return sock, f"http://{shown}:{sock.getsockname()[1]}/"


def serve(sock: socket.socket, key: str | None, loopback: bool, sync_every: float) -> None:
    """Serve make_app() on sock until Ctrl-C or SIGTERM, polling unfinished runs every sync_every
    seconds (0: never) in a background thread."""
    import uvicorn

    from .api import keep_synced
    from .app import make_app

    if sync_every > 0:
        threading.Thread(target=keep_synced, args=(sync_every, threading.Event()), daemon=True,
                         name="ftm-ui-sync").start()
    app = make_app(key=None if loopback else key, loopback_only=loopback)
    uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False)).run(sockets=[sock])
