"""The Fireworks AI backend: a dataset per content, a supervised fine-tuning job (or a DPO job,
dpo.py) per run, the adapter brought home by `ftm pull`.

Talks to FIREWORKS_BASE_URL (default api.fireworks.ai) for the account FIREWORKS_ACCOUNT_ID
with FIREWORKS_API_KEY through the official SDK (`fireworks-ai`), imported only when a job is
started or followed. What makes an interrupted start safe: Fireworks lets the client choose
each resource's id, so a run's job id is derived from our run id (`ftm-run-...`) and a dataset's
from its sha256. A create that may or may not have happened is simply sent again: a 409 says an
earlier attempt made it, and `ftm sync` finds a job by asking for that id. Fireworks reports no
step metrics for its jobs through its API: their states and progress become events.
"""

from __future__ import annotations

import os
import re
from dataclasses import replace
from pathlib import Path

from ftmanager.backend import Option, Progress, RunSpec, Uploads
from ftmanager.errors import InvalidInput, Refused, Unsupported
from ftmanager.hosted import HostedBackend, ProviderJob, RemoteFile, env_number
from ftmanager.hyperparameters import Hyperparameters

from . import dpo
from .datasets import DATA_RULES
from .progress import BASE_LEARNING_RATE

KEY_ENV, ACCOUNT_ENV, URL_ENV = "FIREWORKS_API_KEY", "FIREWORKS_ACCOUNT_ID", "FIREWORKS_BASE_URL"
DEFAULT_BASE_URL = "https://api.fireworks.ai"
# Fireworks' own defaults: what a job trains with when ftm sends nothing
DEFAULT_EPOCHS, DEFAULT_LORA_RANK = 1, 8
OPTIONS = {
    "learning_rate": Option(f"learning rate outright (default: {BASE_LEARNING_RATE:g} x learning_rate_multiplier)", float),
    "lora_r": Option("LoRA rank (loraRank)", int, DEFAULT_LORA_RANK),
    "max_context_length": Option("tokens per example; longer ones are truncated (maxContextLength)", int),
    "early_stop": Option("stop when the validation loss stops improving (earlyStop)", bool, False),
    "output_model": Option("id of the model the job makes (default: from the suffix and run id)", str),
}
_NOT_ID = re.compile(r"[^a-z0-9-]+")


def resource_id(text: str) -> str:
    """text as a Fireworks resource id: lowercase letters, digits and hyphens, at most 63."""
    return _NOT_ID.sub("-", text.lower()).strip("-")[:63].rstrip("-") or "ftm"


def job_id_for(run_id: str) -> str:
    """The job id a run's job gets: derived from our run id, so a repeated create is a 409."""
    return resource_id(f"ftm-{run_id}")


class FireworksBackend(HostedBackend):
    """Supervised fine-tuning and DPO jobs on Fireworks AI through the official SDK."""

    name = "fireworks"
    description = (f"Fireworks AI's supervised fine-tuning and DPO (LoRA; base learning rate {BASE_LEARNING_RATE:g} "
                   "x learning_rate_multiplier); `ftm pull` brings the adapter home")
    default_model = "accounts/fireworks/models/llama-v3p1-8b-instruct"
    options = OPTIONS
    base_learning_rate = BASE_LEARNING_RATE
    data_rules = DATA_RULES  # submit refuses what Fireworks would, before uploading
    methods = ("supervised", "dpo")  # DPO: Fireworks' own dpoJobs resource (dpo.py)
    sdk, client_class, provider = "fireworks", "Fireworks", "Fireworks"
    key_env, url_env, default_base_url, timeout_env = KEY_ENV, URL_ENV, DEFAULT_BASE_URL, "FTM_FIREWORKS_TIMEOUT"
    key_hint = f" and the account in {ACCOUNT_ENV}"
    standin = "ftm standin --provider fireworks"

    def __init__(self, *, timeout: float | None = None, max_retries: int = 2):
        self.account_id = os.environ.get(ACCOUNT_ENV) or ""
        super().__init__(timeout=timeout, max_retries=max_retries)
        self.ready_timeout = env_number("FTM_FIREWORKS_READY_TIMEOUT", 600.0, float)

    def account_of(self) -> str:
        return f"{self.where} account={self.account_id or '-'}"

    def client_settings(self) -> dict:
        """The account every path names (accounts/<id>/...): without it no call can be made."""
        if not self.account_id:
            raise Refused(f"no Fireworks account: {ACCOUNT_ENV} is not set",
                          f"Set {ACCOUNT_ENV} to the id in your account's paths (accounts/<id>/...).")
        return {**super().client_settings(), "account_id": self.account_id}

    # --- the contract ------------------------------------------------------------------------

    def check_model(self, model: str) -> None:
        """Refuse at submit what is no Fireworks model name (accounts/<account>/models/<id>)."""
        parts = model.split("/")
        if len(parts) != 4 or parts[0] != "accounts" or parts[2] != "models" or not all(parts):
            raise InvalidInput(f"{model!r} is not a Fireworks model name",
                               f"Use accounts/<account>/models/<id>, e.g. {self.default_model}.")

    def check_options(self, options: dict) -> None:
        super().check_options(options)
        _typed(options)

    def start(self, spec: RunSpec, uploads: Uploads) -> str:
        """Send the data (one dataset per content and account), then create the run's job."""
        import fireworks

        from .datasets import ensure_dataset

        train = ensure_dataset(self, spec.training_file, spec.dataset_id, uploads)
        valid = None
        if spec.validation_file:
            vid = spec.validation_dataset_id or f"{spec.dataset_id}-validation"
            valid = ensure_dataset(self, spec.validation_file, vid, uploads)
        params, job_id = self._job_params(spec, train, valid), job_id_for(spec.run_id)
        if spec.hyperparameters.method == "dpo":
            return dpo.start(self, spec.run_id, params, job_id, self.resolve(spec)["beta"])
        jobs = self.client.with_options(max_retries=0).supervised_fine_tuning_jobs

        def create() -> str:
            try:
                with self._refusals():
                    return _short(jobs.create(supervised_fine_tuning_job_id=job_id, **params).name)
            except fireworks.ConflictError:  # an earlier attempt made it: sending it again is safe
                return self._ours(job_id, train)

        return self.create_once(create, self.find, spec.run_id)

    def _ours(self, job_id: str, dataset: str) -> str:
        """The job a 409 says exists (of either resource): ours when it trains on our dataset."""
        with self._answered():
            job = self._job(job_id)
        if job.dataset != dataset:
            raise Refused(f"Fireworks already has a job {job_id} on another dataset ({job.dataset})",
                          "Another ledger made it: re-run this run (`ftm rerun`) to get a new run id.")
        return job_id

    def _job_params(self, spec: RunSpec, train: str, valid: str | None) -> dict:
        hp, opts = self.resolve(spec), _typed(spec.options)
        given = spec.hyperparameters
        params = {"dataset": train, **self._starting_point(spec.base_model), "evaluation_dataset": valid,
                  "display_name": f"ftm {spec.run_id}" + (f" {spec.suffix}" if spec.suffix else ""),
                  "output_model": resource_id(opts.get("output_model") or f"{spec.suffix or 'ftm'}-{spec.run_id}"),
                  "epochs": hp["n_epochs"], "lora_rank": hp["lora_r"],
                  "learning_rate": hp["learning_rate"] if _asked_rate(given, opts) else None,
                  "batch_size_samples": hp["batch_size"] if hp["batch_size"] != "auto" else None,
                  "max_context_length": opts.get("max_context_length"), "early_stop": opts.get("early_stop")}
        return {k: v for k, v in params.items() if v is not None}

    def _starting_point(self, model: str) -> dict:
        """base_model, or warm_start_from for a LoRA addon of the account (an earlier run's model,
        as DPO after SFT trains on): Fireworks trains on top of an addon only when named so."""
        _, account, _, model_id = model.split("/")
        if account == "fireworks":  # Fireworks' own catalogue holds base models
            return {"base_model": model}
        found = self._found(lambda: self.client.models.get(model_id, account_id=account), answered=True)
        addon = found is not None and found.kind in ("HF_PEFT_ADDON", "HF_TEFT_ADDON")
        return {"warm_start_from" if addon else "base_model": model}

    def resolve(self, spec: RunSpec) -> dict:
        """Hyperparameters as Fireworks trains with them: its defaults where ftm asks nothing."""
        hp, opts = spec.hyperparameters.resolved(n_epochs=DEFAULT_EPOCHS), _typed(spec.options)
        hp["learning_rate"] = opts.get("learning_rate") or spec.hyperparameters.learning_rate(BASE_LEARNING_RATE)
        hp["learning_rate_multiplier"] = hp["learning_rate"] / BASE_LEARNING_RATE
        hp["lora_r"] = opts.get("lora_r") or DEFAULT_LORA_RANK
        if spec.hyperparameters.method == "dpo":
            hp["beta"] = dpo.checked_beta(spec, opts)
        return hp

    def _job(self, job_id: str):
        """The job of either resource, as a supervised job reads (dpo.as_job)."""
        if dpo.is_dpo(job_id):
            return dpo.as_job(self.client.dpo_jobs.get(dpo.short(job_id)))
        return self.client.supervised_fine_tuning_jobs.get(job_id)

    def find(self, run_id: str) -> str | None:
        """The job of an interrupted start: asked for by the id it would have, as a supervised job
        and then as a DPO job (the run id alone does not say which it started)."""
        for job_id in (job_id_for(run_id), dpo.PREFIX + job_id_for(run_id)):
            if self._found(lambda named=job_id: self._job(named), answered=True) is not None:
                return job_id
        return None

    def poll(self, job_id: str, cursor: dict) -> Progress:
        """The job's state (in OpenAI's words, Fireworks' kept in each event) and progress."""
        with self._answered():
            job = self._job(job_id)
        from .progress import progress

        return progress(job, dict(cursor or {}))

    def cancel(self, job_id: str) -> None:
        with self._answered():
            if dpo.is_dpo(job_id):
                self.client.dpo_jobs.cancel(dpo.short(job_id), body={})
            else:
                self.client.supervised_fine_tuning_jobs.cancel(job_id, body={})

    # --- the account's existing jobs ---------------------------------------------------------

    def jobs(self, page: int = 100):
        """Every supervised fine-tuning and DPO job of the account (every page token), newest first."""
        from .listing import provider_job

        size = min(page, 200)
        with self._answered():  # iterating the SDK's page follows nextPageToken
            listed = [provider_job(j) for j in self.client.supervised_fine_tuning_jobs.list(page_size=size)]
            listed += [provider_job(dpo.as_job(j)) for j in self.client.dpo_jobs.list(page_size=size)]
        yield from sorted(listed, key=lambda j: j.created_at or 0, reverse=True)

    def caught_up(self, job: ProviderJob) -> ProviderJob:
        return replace(job, progress=self.poll(job.job_id, {}))

    def provider_job(self, job_id: str) -> ProviderJob:
        from .listing import provider_job

        with self._answered():
            found = self._found(lambda: self._job(job_id))
            if found is None and not dpo.is_dpo(job_id):  # a DPO job's id as Fireworks shows it, bare
                found = self._job(dpo.PREFIX + job_id)
            return self.caught_up(provider_job(found))

    def remote_file(self, file_id: str) -> RemoteFile | None:
        """A dataset (Fireworks keeps no filename or size of what was uploaded: its display name)."""
        found = self._found(lambda: self.client.datasets.get(file_id.rsplit("/", 1)[-1]), answered=True)
        return RemoteFile(file_id, found.display_name, None) if found is not None else None

    def fetch_file(self, file_id: str, dest) -> bool:
        """The dataset's file, through its signed download URL."""
        from .listing import fetch

        got = self._found(lambda: self.client.datasets.get_download_endpoint(file_id.rsplit("/", 1)[-1]), answered=True)
        return bool(got and got.filename_to_signed_urls) and fetch(got.filename_to_signed_urls, Path(dest))

    # --- the weights -------------------------------------------------------------------------

    def download(self, job_id: str, result_model: str | None, out_dir: Path, merged: bool = False) -> Path:
        """The job's model files, from the signed URLs of models/{id}:getDownloadEndpoint."""
        from .weights import download

        return download(self, job_id, result_model, Path(out_dir), merged)

    def generate(self, result_model: str | None, result_path: str | None, base_model: str,
                 conversations: list[list[dict]], max_new_tokens: int = 256) -> list[str]:
        """Fireworks answers with a fine-tune only from a deployment of yours; a pulled run
        answers here instead (jobs.generate hands it to the local backend)."""
        raise Unsupported("Fireworks answers with a fine-tuned model only from a deployment of yours",
                          "Bring the adapter home with `ftm pull RUN`, then `ftm generate RUN` answers here.")


def _short(name: str) -> str:
    """accounts/a/supervisedFineTuningJobs/ID -> ID (what the SDK's get and cancel take)."""
    return name.rsplit("/", 1)[-1]


def _asked_rate(hp: Hyperparameters, opts: dict) -> bool:
    return bool(opts.get("learning_rate")) or hp.asked("learning_rate_multiplier")


def _typed(options: dict) -> dict:
    """Option values (text from the command line) as their declared types; one line when not."""
    out = {}
    for name, value in options.items():
        kind = OPTIONS[name].type
        try:
            out[name] = _coerce(kind, value)
        except (TypeError, ValueError):
            raise InvalidInput(f"option {name} must be {_KINDS[kind]}, not {str(value)[:40]!r}",
                               f"See `ftm backends` for {name}.") from None
        if kind in (int, float) and not out[name] > 0:
            raise InvalidInput(f"option {name} must be above 0, not {value}", f"Use e.g. -p {name}=8.")
    return out


_KINDS = {bool: "true or false", int: "a whole number", float: "a number", str: "text"}


def _coerce(kind: type, value):
    if kind is bool and not isinstance(value, bool):
        text = str(value).strip().lower()
        if text not in ("true", "false", "1", "0", "yes", "no"):
            raise ValueError(value)
        return text in ("true", "1", "yes")
    return value if isinstance(value, kind) and not isinstance(value, bool) else kind(value)
