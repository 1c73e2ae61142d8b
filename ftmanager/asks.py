"""One chat request and its answer as it is made: an Ask in, Pieces of text, then a Done.

The words the HTTP front, the stand-ins, `ftm serve` and the local model pool share, kept in
the core so the front never imports a backend to speak them. Nothing is imported here.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Ask:
    """One generation request."""

    target: object  # what answers (the engine's target: Engine.target in engine.py); None until a server fills it
    messages: list[dict]  # OpenAI chat messages, already validated by the caller
    max_tokens: int | None = None  # None: up to the model's context
    temperature: float = 0.0  # 0: greedy
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    logprobs: bool = False
    top_logprobs: int = 0
    seed: int | None = None


@dataclass
class Piece:
    """New text as it is made."""

    text: str
    logprobs: list[dict] | None = None  # OpenAI's shape: [{"token", "logprob", "bytes", "top_logprobs"}]


@dataclass
class Done:
    """The end of one answer."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str  # "stop" or "length"
