"""Who may use the dashboard, and from which page.

Three doors, checked before any route runs:
- Host: bound to loopback, only a loopback Host header is served, so a web page whose own DNS
  name is later pointed at 127.0.0.1 (DNS rebinding) cannot read the ledger through the browser.
- Key: off loopback, the server's key is asked once by a login form; the answer is an HttpOnly,
  SameSite=Strict cookie holding an HMAC of the key (never the key itself).
- Cross-site: a request that changes anything must come from the dashboard's own origin
  (Origin, else Sec-Fetch-Site), so another site's form or fetch cannot cancel a run.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from urllib.parse import parse_qs

COOKIE = "ftm_ui_session"
LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})
WRONG_KEY_DELAY = 0.5
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
OPEN_PATHS = ("/login", "/static/app.css")
HEADERS = [
    # Scripts only from the package's own files: even a rendering mistake could not run a payload.
    (b"content-security-policy", b"default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
     b"img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'"),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    # same-origin, not no-referrer: under no-referrer a browser sends `Origin: null` with the
    # login form's POST, and the cross-site door would refuse the dashboard's own form.
    (b"referrer-policy", b"same-origin"),
]


def session_token(key: str) -> str:
    """The cookie value that proves the key was given (the key itself never leaves the form)."""
    return hmac.new(key.encode(), b"ftm ui session", hashlib.sha256).hexdigest()


class Guard:
    """ASGI middleware: the host, key and cross-site doors, and the security headers."""

    def __init__(self, app, key: str | None, hosts: frozenset | None):
        self.app, self.key, self.hosts = app, key, hosts
        self.token = session_token(key) if key else None

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        refusal = self._refusal(scope, headers)
        if refusal:
            return await _answer(send, *refusal)
        if scope["path"] == "/login" and self.key:
            return await self._login(scope, receive, send)

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                message["headers"] = list(message.get("headers", [])) + HEADERS
            await send(message)

        await self.app(scope, receive, send_with_headers)

    def _refusal(self, scope, headers: dict) -> tuple | None:
        """(status, body, extra headers) of a refused request, or None to let it through."""
        host = headers.get("host", "")
        if self.hosts is not None and _hostname(host) not in self.hosts:
            return 403, _error("this dashboard answers only on its loopback address", "Open it at 127.0.0.1."), []
        if scope["method"] not in SAFE_METHODS and not _same_origin(headers, scope):
            return 403, _error("a cross-site request was refused", "Use the dashboard's own page."), []
        if self.token and scope["path"] not in OPEN_PATHS and not self._signed_in(headers):
            if scope["path"].startswith("/api/"):
                return 401, _error("sign in first", "Open the dashboard and give the server's key."), []
            return 303, b"", [(b"location", b"/login")]
        return None

    def _signed_in(self, headers: dict) -> bool:
        for part in headers.get("cookie", "").split(";"):
            name, _, value = part.strip().partition("=")
            if name == COOKIE and hmac.compare_digest(value.encode(), self.token.encode()):
                return True
        return False

    async def _login(self, scope, receive, send):
        if scope["method"] != "POST":
            failed = b"failed" in scope.get("query_string", b"")
            return await _answer(send, 200, login_page(failed), [(b"content-type", b"text/html; charset=utf-8")])
        body = await _body(receive, limit=4096)
        given = parse_qs(body.decode("utf-8", "replace")).get("key", [""])[0]
        if not hmac.compare_digest(given.encode(), self.key.encode()):
            await asyncio.sleep(WRONG_KEY_DELAY)  # guessing a short key by the thousand takes hours
            return await _answer(send, 303, b"", [(b"location", b"/login?failed")])
        cookie = f"{COOKIE}={self.token}; HttpOnly; SameSite=Strict; Path=/"
        await _answer(send, 303, b"", [(b"location", b"/"), (b"set-cookie", cookie.encode())])


def _hostname(host: str) -> str:
    if host.startswith("["):
        return host[: host.find("]") + 1]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def _same_origin(headers: dict, scope) -> bool:
    origin = headers.get("origin")
    if origin:
        scheme = "https" if scope.get("scheme") == "https" else "http"
        return origin == f"{scheme}://{headers.get('host', '')}"
    return headers.get("sec-fetch-site") == "same-origin"


def _error(what: str, next_step: str) -> bytes:
    return json.dumps({"error": {"message": f"{what}. {next_step}", "type": "forbidden"}}).encode()


async def _answer(send, status: int, body: bytes, extra: list) -> None:
    kind = [] if any(k == b"content-type" for k, _ in extra) else [(b"content-type", b"application/json")]
    await send({"type": "http.response.start", "status": status,
                "headers": kind + extra + HEADERS + [(b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


async def _body(receive, limit: int) -> bytes:
    data = b""
    while True:
        message = await receive()
        data += message.get("body", b"")
        if len(data) > limit or not message.get("more_body"):
            return data[:limit]


def login_page(failed: bool) -> bytes:
    """The one page served before the key is given: fixed text, nothing from the request."""
    note = '<p class="bad">That is not the key. Try again.</p>' if failed else ""
    return f"""<!doctype html><html lang="en"><head><meta charset="utf-8"><title>ftm: sign in</title>
<link rel="stylesheet" href="/static/app.css"></head><body class="login"><main>
<h1>ftm</h1><p>This dashboard is served beyond this machine: give the server's key once.</p>{note}
<form method="post" action="/login"><label>Key <input type="password" name="key" autofocus></label>
<button type="submit">Sign in</button></form></main></body></html>""".encode()
