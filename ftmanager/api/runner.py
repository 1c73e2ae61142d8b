"""The seam between the HTTP front and whatever runs a job.

The stand-in runs jobs on a clock (clock.ClockRunner); `ftm serve` will run them with real
local training. The front checks that a request is allowed (a job exists, it is running
before a pause) and then calls the runner; the runner moves the Job record along.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Iterator

from .state import ApiError, Job, State

# Base models that accept fine-tuning, as OpenAI lists them (a runner may offer others).
FINE_TUNABLE = (
    "gpt-4o-mini-2024-07-18",
    "gpt-4o-2024-08-06",
    "gpt-4.1-2025-04-14",
    "gpt-4.1-mini-2025-04-14",
    "gpt-4.1-nano-2025-04-14",
    "gpt-3.5-turbo-0125",
)


@dataclass
class Reply:
    """A chat answer; token counts left None are counted by the front's word-piece rule."""

    text: str = ""
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    finish_reason: str = "stop"


class JobRunner(abc.ABC):
    """Runs fine-tuning jobs for the front and answers chat requests for their models."""

    state: State

    def bind(self, state: State) -> None:
        """Called once by the server before the first request."""
        self.state = state

    def base_models(self) -> tuple[str, ...]:
        """Base models a job may start from (an ft: model this server made is always allowed)."""
        return FINE_TUNABLE

    @abc.abstractmethod
    def start(self, job: Job) -> None:
        """Begin work on a job just created (status validating_files)."""

    def refresh(self, job: Job) -> None:
        """Bring a job's record up to date; called, under the lock, before it is read."""

    @abc.abstractmethod
    def cancel(self, job: Job) -> None:
        """Stop a job that has not finished."""

    def pause(self, job: Job) -> None:
        """Stop a running job's clock or worker, keeping its progress (status paused)."""
        raise ApiError(400, "This server cannot pause fine-tuning jobs.", code="unsupported")

    def resume(self, job: Job) -> None:
        """Carry a paused job on (status queued, then running from where it stopped)."""
        raise ApiError(400, "This server cannot resume fine-tuning jobs.", code="unsupported")

    @abc.abstractmethod
    def answer(self, model: str, messages: list[dict]) -> str:
        """The assistant's reply from `model` (a base or an ft: model) to a chat."""

    def reply(self, model: str, messages: list[dict], params: dict) -> Reply:
        """The answer with its token counts; params: max_tokens, temperature (None: defaults)."""
        return Reply(self.answer(model, messages))

    def stream(self, model: str, messages: list[dict], params: dict) -> Iterator[str | Reply]:
        """The answer in pieces as they are made; a last Reply may carry counts and finish_reason."""
        yield self.answer(model, messages)

    def unknown_model(self, model: str, status: int) -> ApiError:
        """The error for a model this server neither offers nor made (400 on create, 404 in chat)."""
        if status == 404:
            return ApiError(404, f"The model '{model}' does not exist", param="model", code="model_not_found")
        return ApiError(400, f"Model {model} is not available for fine-tuning or does not exist.",
                        param="model", code="model_not_available")

    def close(self) -> None:
        """Release what the runner holds (threads, workers) when the server stops."""
