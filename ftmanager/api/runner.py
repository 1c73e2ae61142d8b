"""The seam between the HTTP front and whatever runs a job.

The stand-in runs jobs on a clock (clock.ClockRunner); `ftm serve` will run them with real
local training. The front checks that a request is allowed (a job exists, it is running
before a pause) and then calls the runner; the runner moves the Job record along.
"""

from __future__ import annotations

import abc

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

    def close(self) -> None:
        """Release what the runner holds (threads, workers) when the server stops."""
