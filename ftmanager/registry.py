"""The registry of backends: the `ftm.backends` entry-point group, plus classes registered in-process.

Engines are found the same way, through `ftm.engines` (see engine.py).

Built-in backends are registered exactly like a third party's: through the entry points in
pyproject.toml, so nothing here names one.
"""

from __future__ import annotations

from .backend import Backend
from .errors import NotFound

ENTRY_POINT_GROUP = "ftm.backends"
_registered: dict[str, type[Backend]] = {}


def register(cls: type[Backend]) -> type[Backend]:
    """Register a backend class in this process (entry points are found without this)."""
    _registered[cls.name] = cls
    return cls


def entry_points(group: str = ENTRY_POINT_GROUP) -> dict:
    """Name -> entry point of an `ftm.*` group (backends here; engine.py asks for `ftm.engines`)."""
    from importlib.metadata import entry_points as found  # late: scanning dist-info costs start-up

    return {ep.name: ep for ep in found(group=group)}


def unknown(kind: str, name: str, choices: list[str]) -> NotFound:
    """The one-line refusal of a backend or engine name that nothing registers."""
    return NotFound(f"no {kind} called {name!r}", f"Choose one of: {', '.join(choices)}.")


def names() -> list[str]:
    return sorted(set(_registered) | set(entry_points()))


def load(name: str) -> type[Backend]:
    """The backend class called name, loaded from its entry point if need be."""
    if name not in _registered:
        ep = entry_points().get(name)
        if ep is None:
            raise unknown("backend", name, names())
        _registered[name] = ep.load()
    return _registered[name]


def get(name: str) -> Backend:
    """An instance of the backend called name."""
    return load(name)()
