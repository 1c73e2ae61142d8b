"""The route table a Server is handed: (method, compiled path, fn(server, request), locked) rows.

The front owns no routes of its own: OpenAI's are in ftmanager.front.openai, each stand-in
brings its provider's. A path is matched below the server's prefix.
"""

from __future__ import annotations

import re
from urllib.parse import unquote

from .state import ApiError


def route_table(rows: list, **groups: str) -> list:
    """A Server's routes from (method, "/path/{id}", fn, locked) rows: each {name} in a path
    matches groups[name], a path segment by default; the matches are the route's params."""
    groups = {"id": "([^/]+)", **groups}

    def compiled(path: str) -> re.Pattern:
        return re.compile(re.sub(r"\{(\w+)\}", lambda m: groups[m.group(1)], path))

    return [(method, compiled(path), fn, locked) for method, path, fn, locked in rows]


def find(routes: list, method: str, path: str, prefix: str):
    """(function, params, locked) for a request, or raise the 404 (or 405) in OpenAI's words."""
    known = False
    for m, pattern, fn, locked in routes:
        match = pattern.fullmatch(path)
        if match:
            known = True
            if m == method:
                return fn, tuple(unquote(g) for g in match.groups()), locked
    word = "Method not allowed" if known else "Invalid URL"
    raise ApiError(405 if known else 404, f"{word} ({method} {prefix}{path})")
