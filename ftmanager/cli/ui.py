"""`ftm ui`: the dashboard over the ledger, in the browser."""

from __future__ import annotations

import secrets

import typer

from .. import paths
from ..errors import LedgerError
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
    from ..ui import server

    loopback = server.is_loopback(host)
    if not loopback and not key:
        key = secrets.token_urlsafe(18)
        print(f"ftm ui: key for the login form (shown once): {key}")
    sock, url = server.listen(host, port)
    print(f"ftm ui: the dashboard of your ledger on {url} (Ctrl-C stops it)")
    print(f"  {_reading()}" + ("" if sync > 0 else " (not polling backends: --sync 0)"), flush=True)
    if not no_browser:
        import webbrowser

        webbrowser.open(url)
    server.serve(sock, key, loopback, sync)


def _reading() -> str:
    """Which ledger the pages read; a home that cannot be used is said here and on every page."""
    try:
        return f"reading {paths.ledger_path()}"
    except LedgerError as err:
        return f"Error: {err.line()} (the dashboard says so until it is fixed)"
