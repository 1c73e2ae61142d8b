"""The seam between the HTTP front and what stands behind it: a Service runs jobs and answers chat.

A stand-in's service moves jobs on a clock (ftmanager.standin.clock.ClockService); `ftm serve`'s
trains them for real (ftmanager.serve.local_service.LocalService). The routes check that a
request is allowed (a job exists, it is running before a pause) and then call the service; the
service moves the Job record along (LocalService: fills it from the job's run).
"""

from __future__ import annotations

import abc
import hashlib
import re
from typing import Iterator

from ..asks import Ask, Done, Piece
from .state import ApiError, Job, State

# Base models that accept fine-tuning, as OpenAI lists them (a service may offer others).
FINE_TUNABLE = (
    "gpt-4o-mini-2024-07-18",
    "gpt-4o-2024-08-06",
    "gpt-4.1-2025-04-14",
    "gpt-4.1-mini-2025-04-14",
    "gpt-4.1-nano-2025-04-14",
    "gpt-3.5-turbo-0125",
)
# The most tokens one answer of each may hold (OpenAI's published output limits).
OUTPUT_LIMITS = {"gpt-4o-mini-2024-07-18": 16384, "gpt-4o-2024-08-06": 16384, "gpt-4.1-2025-04-14": 32768,
                 "gpt-4.1-mini-2025-04-14": 32768, "gpt-4.1-nano-2025-04-14": 32768, "gpt-3.5-turbo-0125": 4096}
# The names OpenAI accepts for them; a job is named after the snapshot, as OpenAI names it.
ALIASES = {re.sub(r"-(\d{4}-\d{2}-\d{2}|\d{4})$", "", name): name for name in FINE_TUNABLE}


def base_of(model: str) -> str:
    """The base-model name an ft: name starts from (any other name unchanged)."""
    return model.split(":")[1] if model.startswith("ft:") and model.count(":") >= 2 else model


class Service(abc.ABC):
    """Runs fine-tuning jobs for the front and answers chat requests for their models."""

    state: State

    def bind(self, state: State) -> None:
        """Called once by the server before the first request."""
        self.state = state

    def base_models(self) -> tuple[str, ...]:
        """Base models a job may start from (an ft: model this server made is always allowed)."""
        return FINE_TUNABLE

    def snapshot(self, model: str) -> str:
        """The snapshot an alias names (gpt-4o-mini -> gpt-4o-mini-2024-07-18); others unchanged."""
        return ALIASES.get(model, model)

    def can_train_on(self, model: str) -> bool:
        """Whether a job may start from model (a snapshot name): a base model, or an ft: model
        this server made."""
        return model in self.base_models() or (model.startswith("ft:") and model in self.state.models)

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

    default_temperature = 1.0  # OpenAI's; a server may choose greedy answers instead

    def models(self) -> list[dict]:
        """models.list: the base models, then the fine-tuned ones (checkpoints by name only)."""
        base = [{"id": m, "object": "model", "created": 1700000000, "owned_by": "system"} for m in self.base_models()]
        return base + [m.to_api() for m in self.state.models.values() if ":ckpt-step-" not in m.id]

    def model(self, model_id: str) -> dict:
        """models.retrieve, or the 404."""
        if self.snapshot(model_id) in self.base_models():
            return {"id": model_id, "object": "model", "created": 1700000000, "owned_by": "system"}
        return self.state.model(model_id).to_api()

    def delete_model(self, model_id: str) -> None:
        """models.delete of a fine-tuned model (a base model is a 403)."""
        if self.snapshot(model_id) in self.base_models():
            raise ApiError(403, "You have insufficient permissions for this operation.", code="permission_denied")
        self.state.model(model_id)
        del self.state.models[model_id]

    def check_model(self, model: str) -> None:
        """Raise the 404 for a model this server cannot answer with (called under the state lock)."""
        if self.snapshot(model) not in self.base_models() and model not in self.state.models:
            raise self.unknown_model(model, 404)

    @abc.abstractmethod
    def chat(self, model: str, ask: Ask) -> Iterator[Piece | Done]:
        """One answer from `model` to ask.messages: Pieces as they are made, then Done.

        Closing the iterator early (the client left) stops the answer being made.
        """

    def max_completion_tokens(self, model: str) -> int | None:
        """The most tokens one answer of model may hold (None: no limit known); an ft: model has
        its base's."""
        return OUTPUT_LIMITS.get(self.snapshot(base_of(model)))

    def fingerprint(self, model: str) -> str:
        """OpenAI's system_fingerprint: fp_ and a digest of what answers for model (the same
        while the model and the server's configuration stay the same)."""
        return "fp_" + hashlib.sha1(f"{type(self).__name__}:{self.configuration(model)}".encode()).hexdigest()[:10]

    def configuration(self, model: str) -> str:
        """What decides how model answers, as text (its name, for a server with nothing more)."""
        return model

    def unknown_model(self, model: str, status: int) -> ApiError:
        """The error for a model this server neither offers nor made (400 on create, 404 in chat)."""
        if status == 404:
            return ApiError(404, f"The model '{model}' does not exist", param="model", code="model_not_found")
        return ApiError(400, f"Model {model} is not available for fine-tuning or does not exist.",
                        param="model", code="model_not_available")

    def close(self) -> None:
        """Release what the service holds (threads, workers) when the server stops."""
