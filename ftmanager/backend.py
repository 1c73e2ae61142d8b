"""The Backend contract: what a backend is asked to do, and what one poll reports.

Backends never touch the ledger: they start a job, report through poll(), and jobs.py
records what they report, so a hosted run and a local run take the same road into SQLite.
How backends are found is ftmanager.registry's; the statuses and metric names they report
in are ftmanager.facts'.
"""

from __future__ import annotations

import abc
import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, ContextManager, Iterator, Protocol

from .errors import Unsupported
from .hyperparameters import Hyperparameters


@dataclass
class RunSpec:
    """Everything a backend needs to start one run. Built by jobs.py from the ledger."""

    run_id: str
    base_model: str
    training_file: Path  # canonical chat JSONL, read-only
    dataset_id: str
    n_examples: int
    run_dir: Path  # a directory the backend may write to (worker files, adapters)
    validation_file: Path | None = None
    validation_dataset_id: str | None = None
    # n_epochs / batch_size / learning_rate_multiplier (int|float or "auto") and the method
    hyperparameters: Hyperparameters = field(default_factory=Hyperparameters)
    suffix: str | None = None
    seed: int | None = None
    options: dict[str, Any] = field(default_factory=dict)  # backend-specific (-p key=value)
    # base_model is an earlier run's model that answers locally: {"run_id", "result_path", "base_model"}
    # as the local backend loads it (an adapter on its base, or a whole model), so a chain needs no export
    base_weights: dict[str, Any] | None = None

    def __post_init__(self):
        self.hyperparameters = Hyperparameters.of(self.hyperparameters)  # a dict (as stored) is read once


@dataclass
class Event:
    id: str  # the provider's event id: events are deduplicated on it
    created_at: float
    message: str
    level: str = "info"
    type: str = "message"  # "message" or "metrics"
    data: dict | None = None


@dataclass
class Checkpoint:
    step: int
    model_id: str | None = None  # e.g. ft:...:ckpt-step-N, or local:<run>:step-N
    path: str | None = None  # where the weights lie, for local checkpoints
    metrics: dict = field(default_factory=dict)
    created_at: float | None = None


@dataclass
class Progress:
    """What one poll learned. Lists hold only what is new since the cursor passed in."""

    status: str
    cursor: dict = field(default_factory=dict)  # handed back on the next poll
    events: list[Event] = field(default_factory=list)
    metrics: list[dict] = field(default_factory=list)  # {"step": n, "train_loss": x, ...}
    checkpoints: list[Checkpoint] = field(default_factory=list)
    hyperparameters: dict | None = None  # as resolved by the provider
    result_model: str | None = None
    result_path: str | None = None
    trained_tokens: int | None = None
    actual_cost: float | None = None
    error: dict | None = None  # {"code", "message", "param"}
    total_steps: int | None = None  # for progress displays
    eta_seconds: float | None = None
    # when the run really ended (seconds since the epoch), as the backend knows it; the ledger
    # records the time of the poll that saw the end only where this is None
    finished_at: float | None = None


@dataclass(frozen=True)
class Rules:
    """A provider's data rules, declared by its backend as `data_rules`: holds(example) raises
    ftmanager.data.export.CannotHold saying why the provider would refuse the example (import
    it inside holds: backends load before any data is read); min_examples and max_bytes bound
    the file."""

    min_examples: int
    max_bytes: int | None
    holds: Callable[[dict], object]


@dataclass(frozen=True)
class Option:
    """One backend-specific option: `ftm submit -p name=value`, or the flag `--name` made from it.

    Values reach the backend as the user typed them (text; True/False for a bool's flag): the
    backend coerces and checks them. type and default say how to offer the option.
    """

    help: str
    type: type = str  # str, int, float or bool
    default: Any = None

    def describe(self) -> str:
        """The help text with the default, as `ftm backends` and `ftm submit --help` show it."""
        if self.default is None:
            return self.help
        shown = str(self.default).lower() if isinstance(self.default, bool) else str(self.default)
        return f"{self.help} (default: {shown})"


def renamed(options: dict, old_names: dict[str, str]) -> dict:
    """options with each option's old spelling (old_names: old -> new) under its new name; both
    given and differing is refused in one line. A backend that renames an option keeps taking
    the old name this way, and its old runs' records read as before."""
    from .errors import InvalidInput

    out = dict(options)
    for old, new in old_names.items():
        if old in out:
            value = out.pop(old)
            if new in out and str(out[new]).lower() != str(value).lower():
                raise InvalidInput(f"options {old}={value} and {new}={out[new]} disagree ({old} is the old "
                                   f"name of {new})", f"Give -p {new} alone.")
            out.setdefault(new, value)
    return out


class Uploads(Protocol):
    """The ledger's record of files already sent to a provider account (given by jobs.py)."""

    def get(self, dataset_id: str, account: str) -> str | None: ...

    def put(self, dataset_id: str, account: str, file_id: str, nbytes: int) -> None: ...

    def forget(self, dataset_id: str, account: str) -> None: ...

    def lock(self, dataset_id: str, account: str) -> ContextManager:
        """Held while a backend checks for an upload and makes it, so that concurrent starts
        (several processes) upload one dataset to one account once."""
        return contextlib.nullcontext()


def upload_once(uploads: Uploads, dataset_id: str, account: str, path: Path, still_there, upload) -> str:
    """The provider's file id for dataset_id at account: the one recorded when still_there(id)
    says it is, else upload()'s (recorded). Concurrent starts wait for each other under the lock."""
    import os

    with uploads.lock(dataset_id, account):
        file_id = uploads.get(dataset_id, account)
        if file_id and still_there(file_id):
            return file_id
        if file_id:
            uploads.forget(dataset_id, account)
        file_id = upload()
        uploads.put(dataset_id, account, file_id, os.path.getsize(path))
    return file_id


class Backend(abc.ABC):
    """A place that runs supervised fine-tuning jobs."""

    name: ClassVar[str]
    description: ClassVar[str] = ""
    default_model: ClassVar[str | None] = None
    # backend-specific options (`ftm submit -p key=value`, or a flag `--key`): name -> Option
    # (a plain string declares a text option with that help)
    options: ClassVar[dict[str, Option | str]] = {}
    # the provider account uploads are cached for (base URL + organisation); never a key
    account: str = ""
    # the rate learning_rate_multiplier scales, where the backend documents one (re-runs map on it)
    base_learning_rate: ClassVar[float | None] = None
    # the provider's data rules: `ftm submit` refuses what breaks them
    # before uploading, `ftm datasets validate --provider NAME` reports it
    data_rules: ClassVar[Rules | None] = None
    # the training methods it runs (hyperparameters.METHODS): `ftm submit --method` refuses others
    methods: ClassVar[tuple[str, ...]] = ("supervised",)

    def check_method(self, method: str, model: str) -> None:
        """Refuse, in one line, a training method this backend (or this model) cannot run."""
        if method not in self.methods:
            raise Unsupported(f"the {self.name} backend has no {method} training", "Use a backend that has it.")

    @abc.abstractmethod
    def start(self, spec: RunSpec, uploads: Uploads) -> str:
        """Start a job for spec; return the provider's job id."""

    @abc.abstractmethod
    def poll(self, job_id: str, cursor: dict) -> Progress:
        """Report the job's status and everything new since cursor."""

    @abc.abstractmethod
    def cancel(self, job_id: str) -> None:
        """Ask the provider to stop the job."""

    def find(self, run_id: str) -> str | None:
        """Find the job an interrupted start() may have created for our run id.

        start() raises errors.Refused when the provider definitely refused (the run is marked
        failed); any other exception leaves the run `created`, and `ftm sync` calls find()
        before it ever calls start() again, so a job is never created twice.
        """
        return None

    def poll_interval(self, status: str, last: float | None) -> float:
        """Seconds to wait before the next poll, given the status and the last interval."""
        return 2.0

    def pause(self, job_id: str) -> None:
        raise Unsupported(f"the {self.name} backend cannot pause runs", "Cancel it instead.")

    def resume(self, job_id: str, spec: RunSpec) -> str | None:
        """Resume a paused or interrupted job; may return a new job id."""
        raise Unsupported(f"the {self.name} backend cannot resume runs", "Re-run it instead.")

    def reap(self, job_id: str) -> None:
        """Collect the exit status of the job's process if this process launched it (a local
        worker), so none lingers as <defunct>; nothing for a hosted job."""

    def generate(self, result_model: str | None, result_path: str | None, base_model: str,
                 conversations: list[list[dict]], max_new_tokens: int = 256) -> list[str]:
        """Answer each conversation with the run's model (the base model when both are None)."""
        raise Unsupported(f"the {self.name} backend cannot generate", "Export the model and use it directly.")

    def answer_logprobs(self, result_model: str | None, result_path: str | None, base_model: str,
                        conversations: list[list[dict]]) -> list[tuple[float, int]]:
        """(summed log-probability, token count) of each conversation's last assistant message."""
        raise Unsupported(f"the {self.name} backend does not give token log-probabilities",
                          "Perplexity comes from the run's validation loss where the provider reports one.")

    def export(self, result_path: str, base_model: str, out_dir: str, merge: bool = True) -> Path:
        """Write the run's model to out_dir in a form plain libraries load."""
        raise Unsupported(f"the {self.name} backend keeps its weights", "Only local runs can be exported.")

    def download(self, job_id: str, result_model: str | None, out_dir: Path, merged: bool = False) -> Path:
        """Write what the job trained under out_dir (its LoRA adapter; merged weights with merged)
        streamed to disk, never whole in memory, and unpacked (ftmanager.pulls.unpack); return the
        folder holding a peft adapter (adapter_config.json) or a whole model (config.json).

        `ftm pull` calls it with a temporary out_dir that it renames once this returns.
        """
        raise Unsupported(f"the {self.name} backend gives no weights to download",
                          "`ftm pull` brings home runs of providers that give their weights (together, fireworks).")

    def estimate_cost(self, spec: RunSpec, billed_tokens: int | None) -> float | None:
        """Estimated cost in USD of the run, or None where it has no price."""
        return None

    # --- the provider account's own history (`ftm import`); optional -----------------------

    def jobs(self, page: int = 100) -> Iterator:
        """Every job of the account, newest first, one ProviderJob (ftmanager.hosted) at a time:
        its request read, its progress not yet (caught_up reads that). A backend that cannot list
        its provider's jobs keeps this refusal, and `ftm import` says so in one line."""
        raise Unsupported(f"the {self.name} backend cannot list its provider's jobs",
                          "Start runs with `ftm submit`; only backends that list their jobs can import them.")

    def caught_up(self, job):
        """job (from jobs()) with progress: everything it reported from its start."""
        return self.provider_job(job.job_id)

    def provider_job(self, job_id: str):
        """One job of the account by the provider's id, caught up from its start."""
        raise Unsupported(f"the {self.name} backend cannot read its provider's jobs", "Start runs with `ftm submit`.")

    def remote_file(self, file_id: str):
        """A file of the account (ftmanager.hosted.RemoteFile: its name, size and purpose), or
        None where the provider no longer has it."""
        return None

    def fetch_file(self, file_id: str, dest: Path) -> bool:
        """Write the file's content to dest; False where the provider does not give it back."""
        return False

    def resolve(self, spec: RunSpec) -> dict:
        """Hyperparameters as this backend will use them, before the job starts (each "auto"
        through spec.hyperparameters.resolved() with this backend's defaults)."""
        return spec.hyperparameters.resolved()

    @classmethod
    def declared_options(cls) -> dict[str, Option]:
        """The options this backend takes, each as an Option."""
        return {name: o if isinstance(o, Option) else Option(str(o)) for name, o in cls.options.items()}

    def check_model(self, model: str) -> None:
        """Refuse (InvalidInput) a base model this backend cannot train; called at submit,
        before anything is recorded. The default accepts any: the provider decides."""

    def check_options(self, options: dict) -> None:
        unknown = sorted(set(options) - set(self.options))
        if unknown:
            known = ", ".join(sorted(self.options)) or "none"
            raise Unsupported(
                f"the {self.name} backend has no option {', '.join(unknown)}",
                f"Options it takes: {known} (see `ftm backends`).",
            )

