"""The inference engine's contract: load a base, attach adapters, stream answers, score log-probabilities.

`ftm serve`, `generate`, `chat`, `eval` and `pull` reach a model's weights through this contract
only. An engine is found like a backend, through the `ftm.engines` entry-point group, so core
never imports one and a second engine (vLLM on a GPU server, say) plugs in without touching
core. The built-in engine is the local backend's (`ftm_backends.local.engine`). Answers speak
the words of asks.py: an Ask in, Pieces of text, then a Done.
"""

from __future__ import annotations

import abc
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

from . import registry
from .asks import Ask, Done, Piece
from .errors import InvalidInput

ENTRY_POINT_GROUP = "ftm.engines"
DEFAULT = "local"


class PromptTooLong(InvalidInput):
    """The prompt leaves no room in the model's context (OpenAI's context_length_exceeded)."""


class Pool(Protocol):
    """Models in memory and the threads that decode for them: bases loaded, adapters attached as asked."""

    def stream(self, ask: Ask) -> Iterator[Piece | Done]:
        """Pieces of one answer as they are made, then its Done; closing the iterator stops it."""

    def answers(self, asks: list[Ask]) -> list[Done]:
        """Every answer, the requests decoded together."""

    def loaded(self) -> dict[str, list[str]]:
        """Base -> the adapters loaded on it (what is in memory)."""

    def close(self) -> None:
        """Stop every thread; requests still waiting end with an error."""


class Engine(abc.ABC):
    """Answers and scores with the models ftm trained or pulled."""

    name: str = ""

    @abc.abstractmethod
    def pool(self, device: str = "auto", max_batch: int = 8) -> Pool:
        """A pool of its own (a server's), loading nothing until the first ask."""

    @abc.abstractmethod
    def shared(self) -> Pool:
        """This process's pool: models stay loaded across calls (`ftm chat` reads each line with it)."""

    @abc.abstractmethod
    def target(self, result_path: str | None, base_model: str | None) -> object:
        """What answers for a run's model (its base, adapter and prompt template), for Ask.target."""

    @abc.abstractmethod
    def check_device(self, device: str) -> str:
        """device, normalised, if this engine can run on it; else InvalidInput."""

    @abc.abstractmethod
    def ships(self, base_model: str) -> bool:
        """Whether base_model comes with the engine: it loads by that name without a path or the hub."""

    @abc.abstractmethod
    def merge(self, adapter: str, base_model: str, out_dir: str) -> Path:
        """The adapter merged into its base, written to out_dir as a whole model (for export)."""

    @abc.abstractmethod
    def answer_logprobs(self, result_path: str | None, base_model: str | None,
                        conversations: list[list[dict]]) -> list[tuple[float, int]]:
        """Log-probability and token count of each conversation's last assistant message."""


_loaded: dict[str, Engine] = {}


def get(name: str = DEFAULT) -> Engine:
    """The engine called name, loaded once from its entry point."""
    if name not in _loaded:
        found = registry.entry_points(ENTRY_POINT_GROUP)
        if name not in found:
            raise registry.unknown("engine", name, sorted(found))
        _loaded[name] = found[name].load()()
    return _loaded[name]
