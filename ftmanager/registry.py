"""The registry of backends: the `ftm.backends` entry-point group, plus classes registered in-process.

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


def _entry_points() -> dict:
    from importlib.metadata import entry_points  # late: scanning dist-info costs start-up

    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def names() -> list[str]:
    return sorted(set(_registered) | set(_entry_points()))


def load(name: str) -> type[Backend]:
    """The backend class called name, loaded from its entry point if need be."""
    if name not in _registered:
        ep = _entry_points().get(name)
        if ep is None:
            raise NotFound(
                f"no backend called {name!r}",
                f"Choose one of: {', '.join(names())}.",
            )
        _registered[name] = ep.load()
    return _registered[name]


def get(name: str) -> Backend:
    """An instance of the backend called name."""
    return load(name)()
