"""The Together AI backend: upload once per account, create the job, follow it, bring its weights home.

Talks to TOGETHER_BASE_URL (default api.together.ai) with TOGETHER_API_KEY (and
TOGETHER_PROJECT_ID) through the official `together` SDK, imported only when a job is started,
polled or pulled. Together's jobs carry no metadata, so the run id rides in the job's suffix
(`mysuffix-run-1a2b3c4d`, within Together's 40 characters): after an ambiguous create, find()
looks the job up by it before anything is created again, so a run never has two jobs.
"""

from __future__ import annotations

import os
import time
from dataclasses import replace
from pathlib import Path

from ftmanager.backend import Option, Progress, RunSpec, Rules, Uploads, renamed
from ftmanager.errors import FtmError, InvalidInput, NotFound, Refused, Unsupported
from ftmanager.facts import SUCCEEDED, auto_epochs, is_terminal
from ftmanager.hosted import HostedBackend, ProviderJob, usd

from . import listing, progress

KEY_ENV, URL_ENV, PROJECT_ENV = "TOGETHER_API_KEY", "TOGETHER_BASE_URL", "TOGETHER_PROJECT_ID"
DEFAULT_BASE_URL = "https://api.together.ai"
BASE_LEARNING_RATE = 1e-5  # Together's default rate: what learning_rate_multiplier scales
MAX_SUFFIX = 40  # Together's limit; the run id takes 13 of them
METRICS_EVERY = 10  # quiet polls between asks for step metrics while a job trains
TRAINING_TYPES = ("lora", "full")
# Old spellings still taken: training_type was called method until the training method (supervised,
# dpo) took that name; old commands and old runs' options say -p method=full.
OLD_NAMES = {"method": "training_type"}
OPTIONS = {
    "learning_rate": Option(f"learning rate outright (default: {BASE_LEARNING_RATE:g} x learning_rate_multiplier)", float),
    "training_type": Option("lora, or full (every weight; no adapter to pull, only merged weights)", str, "lora"),
    "lora_r": Option("LoRA rank (default: the model's, from Together's limits)", int),
    "lora_alpha": Option("LoRA alpha (default: twice the rank)", int),
    "lora_dropout": Option("dropout on the LoRA input", float, 0.0),
    "target_modules": Option("comma-separated module names, or all-linear", str, "all-linear"),
    "max_length": Option("max_seq_length: tokens per example (default: the model's)", int),
    "warmup_ratio": Option("share of steps spent warming the learning rate up", float, 0.0),
    "n_checkpoints": Option("checkpoints Together keeps", int, 1),
    "n_evals": Option("validation passes during training (default: 1 per epoch with a validation set)", int),
    "train_on_inputs": Option("auto, true or false: also train on user turns", str, "auto"),
}

# Together's data rules: its export's example rules (checked against Together's own file check in
# tests/peers/), at least one example (its SDK's MIN_SAMPLES), files up to 50.1 GB (MAX_FILE_SIZE_GB)
def _holds(example: dict) -> None:
    from ftmanager.data.export import to_together

    to_together(example)


DATA_RULES = Rules(1, int(50.1 * (1 << 30)), _holds)


def tagged_suffix(suffix: str | None, run_id: str) -> str:
    """The suffix Together gets: the user's (shortened to fit) and our run id, which find() looks for."""
    if not suffix:
        return run_id
    return f"{suffix[: MAX_SUFFIX - len(run_id) - 1]}-{run_id}"


class TogetherBackend(HostedBackend):
    """Fine-tuning jobs on Together AI (or a server speaking its API) through the official SDK."""

    sdk, client_class, provider = "together", "Together", "Together"
    key_env, url_env, default_base_url = KEY_ENV, URL_ENV, DEFAULT_BASE_URL
    key_hint = f" (and {PROJECT_ENV})"
    standin = "ftm standin --provider together"
    name = "together"
    description = ("Together AI's fine-tuning API (LoRA or full), via TOGETHER_BASE_URL; "
                   "`ftm pull` brings the weights home")
    options = OPTIONS
    base_learning_rate = BASE_LEARNING_RATE
    methods = ("supervised", "dpo")  # DPO: training_method "dpo" with dpo_beta
    data_rules = DATA_RULES  # submit refuses, before uploading, data Together would reject

    def __init__(self, *, max_retries: int = 2, timeout: float = 60.0):
        self.project = os.environ.get(PROJECT_ENV) or None
        super().__init__(timeout=timeout, max_retries=max_retries)

    def account_of(self) -> str:
        return f"{self.where} project={self.project or '-'}"

    def client_settings(self) -> dict:
        return {**super().client_settings(), "project_id": self.project}

    # --- starting --------------------------------------------------------------------------

    def start(self, spec: RunSpec, uploads: Uploads) -> str:
        """Upload the data (once per account), then create the job with our run id in its suffix."""
        training = self._ensure_file(spec.training_file, spec.dataset_id, uploads)
        validation = None
        if spec.validation_file:
            validation = self._ensure_file(spec.validation_file, spec.validation_dataset_id or f"{spec.dataset_id}-v", uploads)
        return self._create(spec, self._job_params(spec, training, validation, self._limits(spec.base_model)))

    def _limits(self, model: str):
        """The model's limits (the SDK's own first call; its 404 means Together trains no such model)."""
        try:
            with self._refusals():
                return self.client.fine_tuning.model_limits(model_name=model)
        except NotFound:
            raise Refused(f"Together does not fine-tune {model}",
                          "Choose a model it does (`ftm rerun` maps OpenAI's through the base-model table).") from None

    def _ensure_file(self, path: Path, dataset_id: str, uploads: Uploads) -> str:
        def send() -> str:
            with self._refusals():  # ftm checked the data by Together's rules already: no second read
                return self.client.files.upload(file=Path(path), purpose="fine-tune", check=False).id

        return self.upload_once(uploads, dataset_id, path, self._still_there, send)

    def _still_there(self, file_id: str) -> bool:
        return self._found(lambda: self.client.files.retrieve(file_id)) is not None

    def _job_params(self, spec: RunSpec, training: str, validation: str | None, limits) -> dict:
        hp, opts = self.resolve(spec), renamed(spec.options, OLD_NAMES)
        lora = hp["training_type"] == "lora"
        params = {"training_file": training, "model": spec.base_model, "n_epochs": hp["n_epochs"],
                  "batch_size": self._batch(hp["batch_size"], limits, lora, hp.get("method") == "dpo"), "learning_rate": hp["learning_rate"],
                  "lora": lora, "suffix": tagged_suffix(spec.suffix, spec.run_id), "model_limits": limits,
                  **_training_method(spec.hyperparameters, opts),
                  "warmup_ratio": float(opts.get("warmup_ratio", 0.0)), "n_checkpoints": int(opts.get("n_checkpoints", 1))}
        if lora:
            params.update(lora_r=_int(opts.get("lora_r")), lora_alpha=_int(opts.get("lora_alpha")),
                          lora_dropout=float(opts.get("lora_dropout", 0.0)),
                          lora_trainable_modules=opts.get("target_modules", "all-linear"))
        if validation:
            params.update(validation_file=validation, n_evals=int(opts.get("n_evals") or hp["n_epochs"]))
        optional = {"random_seed": spec.seed, "max_seq_length": _int(opts.get("max_length"))}
        params.update({k: v for k, v in optional.items() if v is not None})
        return params

    @staticmethod
    def _batch(batch, limits, lora: bool, dpo: bool = False):
        """batch_size within the model's limits ("max" for auto): Together refuses any other (a
        DPO run's has a lower maximum of its own, max_batch_size_dpo)."""
        if batch in (None, "auto"):
            return "max"
        bounds = limits.lora_training if lora else limits.full_training
        if not bounds:
            return int(batch)
        most = bounds.max_batch_size_dpo if dpo and bounds.max_batch_size_dpo else bounds.max_batch_size
        return max(bounds.min_batch_size, min(most, int(batch)))

    def _create(self, spec: RunSpec, params: dict) -> str:
        """Create the job; after an ambiguous failure, look for it before creating again."""
        client = self.client.with_options(max_retries=0)

        def create() -> str:
            try:
                with self._refusals():
                    return client.fine_tuning.create(**params).id
            except ValueError as err:  # the SDK refused the settings before sending anything
                raise Refused(f"Together's SDK refused the job's settings: {err}", "Fix that and try again.") from None

        return self.create_once(create, self.find, spec.run_id)

    def find(self, run_id: str) -> str | None:
        """The job whose suffix carries our run id, if one exists (the oldest, should there be several)."""
        with self._answered():
            jobs = self.client.fine_tuning.list().data
        mine = [j for j in jobs if (j.suffix or "").endswith(run_id) or run_id in (j.x_model_output_name or "")]
        return min(mine, key=lambda j: str(j.created_at or "")).id if mine else None

    # --- following -------------------------------------------------------------------------

    def poll(self, job_id: str, cursor: dict) -> Progress:
        """The job's status and everything new since cursor; nothing is consumed on failure."""
        cursor = dict(cursor or {})
        with self._answered():
            job = self.client.fine_tuning.retrieve(job_id).to_dict()
            raw = job.get("events")
            raw = raw if raw is not None else self.client.fine_tuning.list_events(job_id).to_dict()["data"]
        word = job["status"]
        status = progress.status(word, cursor)
        events = progress.status_event(job_id, word, cursor, progress.when(job.get("updated_at")) or time.time())
        events += progress.new_events(raw, cursor)
        metrics = progress.metrics(self._metrics(job_id, status, bool(events), cursor), cursor)
        checkpoints = self._checkpoints(job_id, status, events, cursor)
        cursor["status"] = status
        return self._progress(job, status, cursor, events, metrics, checkpoints, raw)

    def _metrics(self, job_id: str, status: str, news: bool, cursor: dict) -> list[dict]:
        """Step metrics newer than the cursor's: asked for while training when the job has news
        or every METRICS_EVERY quiet polls (a step can take minutes), and once at the end."""
        quiet = cursor.get("quiet_polls", 0) + 1
        due = news or quiet >= METRICS_EVERY or is_terminal(status)
        if status in ("validating_files", "queued") or cursor.get("metrics_final") or not due:
            cursor["quiet_polls"] = quiet
            return []
        cursor.update(quiet_polls=0, metrics_final=is_terminal(status))
        with self._answered():
            page = self.client.fine_tuning.list_metrics(job_id, global_step_from=cursor.get("metric_step", 0) + 1)
        return page.metrics or []

    def _checkpoints(self, job_id: str, status: str, events, cursor: dict) -> list:
        """Checkpoints not yet reported, asked for only when an event or the end says so."""
        announced = any((e.data or {}).get("type") == "checkpoint_save" for e in events)
        final = status == SUCCEEDED and not cursor.get("checkpoints_final")
        if not (announced or final):
            return []
        cursor["checkpoints_final"] = cursor.get("checkpoints_final") or final
        with self._answered():
            rows = self.client.fine_tuning.list_checkpoints(job_id).to_dict()["data"]
        return progress.checkpoints(rows, job_id, cursor)

    def _progress(self, job: dict, status: str, cursor, events, metrics, checkpoints, raw) -> Progress:
        done = status == SUCCEEDED
        trained = (job.get("token_count") or 0) * (job.get("n_epochs") or 1) if done else None
        totals = [e.get("total_steps") for e in raw if e.get("total_steps")]
        return Progress(
            status=status, cursor=cursor, events=events, metrics=metrics, checkpoints=checkpoints,
            hyperparameters=progress.hyperparameters(job, BASE_LEARNING_RATE) if status != "validating_files" else None,
            result_model=job.get("model_output_name") if done else None, trained_tokens=trained,
            actual_cost=self._cost(job, trained), total_steps=max(totals) if totals else None,
            error=progress.error(raw) if status == "failed" else None,
            finished_at=progress.when(job.get("updated_at")) if is_terminal(status) else None,
        )

    def _cost(self, job: dict, tokens: int | None) -> float | None:
        full = (job.get("training_type") or {}).get("type") == "Full"
        return usd(tokens, self.price(job.get("model") or "", {"training_type": "full" if full else "lora"}))

    # --- the account's existing jobs ---------------------------------------------------------

    def jobs(self, page: int = 100):
        """Every fine-tuning job of the account, newest first (Together lists them in one answer)."""
        with self._answered():
            listed = self.client.fine_tuning.list().to_dict().get("data") or []
        for job in sorted(listed, key=lambda j: progress.when(j.get("created_at")) or 0, reverse=True):
            yield listing.provider_job(job, BASE_LEARNING_RATE)

    def caught_up(self, job: ProviderJob) -> ProviderJob:
        """job with everything it reported from its start: a first poll from an empty cursor."""
        return replace(job, progress=self.poll(job.job_id, {}))

    def provider_job(self, job_id: str) -> ProviderJob:
        with self._answered():
            job = self.client.fine_tuning.retrieve(job_id).to_dict()
        return self.caught_up(listing.provider_job(job, BASE_LEARNING_RATE))

    # --- the rest of the contract ------------------------------------------------------------

    def cancel(self, job_id: str) -> None:
        with self._answered():
            self.client.fine_tuning.cancel(job_id)

    def download(self, job_id: str, result_model: str | None, out_dir: Path, merged: bool = False) -> Path:
        """The job's adapter (or merged weights) streamed to a file (resumed after a dropped
        connection, capped, every failure one line: ftmanager.downloads), then unpacked."""
        from urllib.parse import urlencode

        from ftmanager.downloads import fetch
        from ftmanager.pulls import unpack

        out_dir.mkdir(parents=True, exist_ok=True)
        archive = out_dir / ".download.tar.zst"
        query = urlencode({"ft_id": job_id, "checkpoint": "merged" if merged else "adapter"})
        url = f"{str(self.client.base_url).rstrip('/')}/v1/finetune/download?{query}"  # the SDK's own path
        fetch(url, archive, self.name, {"Authorization": f"Bearer {self.client.api_key}"})
        try:
            return unpack(archive, out_dir, self.name)
        finally:
            archive.unlink(missing_ok=True)

    def resolve(self, spec: RunSpec) -> dict:
        """The settings as the job will use them: epochs by ftm's auto rule, batch "max" for auto."""
        opts = renamed(spec.options, OLD_NAMES)
        hp = spec.hyperparameters.resolved(n_epochs=auto_epochs(spec.n_examples) or 1)
        rate = opts.get("learning_rate")
        hp.update(learning_rate=float(rate) if rate is not None else spec.hyperparameters.learning_rate(BASE_LEARNING_RATE),
                  training_type=opts.get("training_type", "lora"))
        return hp

    def price(self, model: str, options: dict | None = None) -> float | None:
        """USD per 1M training tokens from models.toml (full training's price where it has one)."""
        from ftmanager.data.known_models import model_info, table

        try:
            info = model_info(model)
            fields = table()["models"].get(info.entry or "", {})
        except (FtmError, OSError, ValueError):  # an unreadable table: no price rather than no poll
            return None
        full = renamed(options or {}, OLD_NAMES).get("training_type") == "full"
        price = fields.get("full_train_usd_per_1m") if full else None
        return float(price) if price is not None else info.price_per_1m_train

    def check_model(self, model: str) -> None:
        """Refuse at submit a model that only OpenAI trains, naming the one Together trains instead."""
        from ftmanager import basemodels

        row = basemodels.row_of(model)
        if row is not None and "together" not in row.ids and {"openai", "azure"} & set(row.ids):
            found = basemodels.model_on(model, "openai", "together")
            raise InvalidInput(f"{model} is OpenAI's: Together does not train it",
                               f"Use an open model, e.g. --model {found[0]} (the base-model table's choice)."
                               if found else "Pass an open model with --model.")

    def check_options(self, options: dict) -> None:
        """Refuse unknown options and values Together never takes, before the run is recorded."""
        options = renamed(options, OLD_NAMES)  # -p method=full: training_type's old name
        super().check_options(options)
        if options.get("training_type", "lora") not in TRAINING_TYPES:
            raise InvalidInput(f"option training_type must be lora or full, not {options['training_type']!r}",
                               "Together trains LoRA adapters or every weight (-p training_type=full).")
        for name in ("lora_r", "lora_alpha", "max_length", "n_checkpoints", "n_evals"):
            if options.get(name) is not None and (_int(options[name]) or 0) < 1:
                raise InvalidInput(f"option {name} must be a whole number of at least 1", f"Use e.g. -p {name}=8.")
        for name in ("learning_rate", "lora_dropout", "warmup_ratio"):
            _float(options, name)
        _on_inputs(options.get("train_on_inputs", "auto"))

    def generate(self, result_model, result_path, base_model, conversations, max_new_tokens=256):
        raise Unsupported("a Together run answers here once its weights are pulled",
                          "Run `ftm pull RUN` first (it brings the adapter home).")


def _int(value) -> int | None:
    if value is None:
        return None
    try:
        return int(str(value).strip())
    except ValueError:
        return 0


def _float(options: dict, name: str) -> None:
    try:
        value = float(options[name]) if options.get(name) is not None else 0.0
    except (TypeError, ValueError):
        value = -1.0
    if not 0 <= value < float("inf"):
        raise InvalidInput(f"option {name} must be a number of at least 0, not {options[name]!r}", f"Use e.g. -p {name}=0.1.")


def _on_inputs(value):
    text = str(value).strip().lower()
    if text not in ("auto", "true", "false"):
        raise InvalidInput(f"option train_on_inputs must be auto, true or false, not {value!r}", "Use -p train_on_inputs=auto.")
    return text if text == "auto" else text == "true"


def _training_method(record, opts: dict) -> dict:
    """The SDK's training_method and its own settings: SFT's train_on_inputs, or DPO's dpo_beta
    (beta by its name here; "auto" leaves it Together's)."""
    if record.method == "dpo":
        beta = record.settings.get("beta", "auto")
        return {"training_method": "dpo", **({} if beta == "auto" else {"dpo_beta": float(beta)})}
    return {"training_method": "sft", "train_on_inputs": _on_inputs(opts.get("train_on_inputs", "auto"))}
