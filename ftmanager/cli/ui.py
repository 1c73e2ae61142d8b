"""`ftm ui`: the dashboard over the ledger, in the browser."""

from __future__ import annotations

import ipaddress
import secrets

import typer

from .. import paths
from ..errors import InvalidInput
from . import app


@app.command()
def ui(
    host: str = typer.Option("127.0.0.1", help="Address to listen on. Beyond loopback a key is asked for once."),
    port: int = typer.Option(8765, help="Port to listen on; 0 picks a free one."),
    no_browser: bool = typer.Option(False, "--no-browser", help="Only print the address; open no browser."),
    key: str = typer.Option(None, "--key", envvar="FTM_UI_KEY", show_envvar=True,
                            help="The key the login form asks for off loopback (default: a new one, printed once)."),
    sync: float = typer.Option(3.0, "--sync", help="Poll unfinished runs' backends every this many seconds "
                               "(as `ftm sync` does; 0: only read the ledger)."),
):
    """Serve a dashboard of every run, curve, comparison, dataset and model, and a playground.

    Reads the ledger of FTM_HOME; loads no model until the playground asks one to answer.
    Every asset ships in the package: it works with no internet.
    """
    import socket

    import uvicorn

    from ..ui import make_app

    loopback = _is_loopback(host)
    if not loopback and not key:
        key = secrets.token_urlsafe(18)
        print(f"ftm ui: key for the login form (shown once): {key}")
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(128)  # before the address is printed: whoever reads it can connect at once
    except OSError as err:
        raise InvalidInput(f"cannot listen on {host}:{port} ({err.strerror})",
                           "Pick another with --port, or --port 0 for a free one.") from None
    url = f"http://{'[' + host + ']' if ':' in host else host}:{sock.getsockname()[1]}/"
    server = uvicorn.Server(uvicorn.Config(make_app(key=None if loopback else key, loopback_only=loopback),
                                           log_level="warning", access_log=False))
    print(f"ftm ui: the dashboard of your ledger on {url} (Ctrl-C stops it)")
    print(f"  reading {paths.ledger_path()}" + ("" if sync > 0 else " (not polling backends: --sync 0)"), flush=True)
    if sync > 0:
        _keep_synced(sync)
    if not no_browser:
        import webbrowser

        webbrowser.open(url)
    server.run(sockets=[sock])


def _keep_synced(every: float) -> None:
    import threading

    from ..ui.api import keep_synced

    threading.Thread(target=keep_synced, args=(every, threading.Event()), daemon=True, name="ftm-ui-sync").start()


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
