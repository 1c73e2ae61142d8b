"""DPO on Fireworks: its own resource, dpoJobs, beside supervisedFineTuningJobs.

A DPO run's job id says which resource it is, as Fireworks names it: `dpoJobs/<id>` (a
supervised job's id stays bare, as every run before DPO recorded it). So poll, cancel and pull
go straight to the right resource; only find(), which has nothing but the run id, asks both.

The job is created like the supervised one (an id derived from the run id, a 409 that is ours
when it trains on our dataset) with the same settings nested in trainingConfig, and the loss
named outright: lossConfig.method "DPO" with dpo.beta. Named, because the SDK documents that a
preference job whose lossConfig leaves the method unspecified trains with GRPO. Fireworks' DPO
beta must be above 0 and below 0.5 (the SDK's DpoConfig); its managed jobs document no default,
so "auto" is 0.1 (the default of Fireworks' own DPO recipe, and TRL's), sent so that the record
says what trained. A dpoJob has no evaluation dataset and no early stopping.
"""

from __future__ import annotations

from types import SimpleNamespace

from ftmanager.backend import RunSpec
from ftmanager.errors import BackendError, InvalidInput

PREFIX = "dpoJobs/"
DEFAULT_BETA, MAX_BETA = 0.1, 0.5


def is_dpo(job_id: str) -> bool:
    return job_id.startswith(PREFIX)


def short(job_id: str) -> str:
    """The id the SDK's dpo_jobs calls take."""
    return job_id.removeprefix(PREFIX)


def job_ref(name: str) -> str:
    """ftm's id for a job of either resource, from its name (accounts/a/<resource>/ID)."""
    parts = (name or "").split("/")
    return PREFIX + parts[-1] if len(parts) > 1 and parts[-2] == PREFIX[:-1] else parts[-1]


def checked_beta(spec: RunSpec, options: dict) -> float:
    """The beta a DPO run trains with ("auto": DEFAULT_BETA), refused in one line where Fireworks'
    DPO would refuse it or the run asks for what a dpoJob does not have."""
    if spec.validation_file:
        raise InvalidInput("Fireworks' DPO jobs take no validation set",
                           "Submit without --validation or --split (or use --method supervised).")
    if options.get("early_stop"):
        raise InvalidInput("Fireworks' DPO jobs have no early stopping", "Leave out -p early_stop.")
    beta = spec.hyperparameters.settings.get("beta", "auto")
    beta = DEFAULT_BETA if beta == "auto" else float(beta)
    if not 0 < beta < MAX_BETA:
        raise InvalidInput(f"Fireworks' DPO takes beta above 0 and below {MAX_BETA}, not {beta:g}",
                           f"Give --beta below {MAX_BETA} (auto is {DEFAULT_BETA:g}).")
    return beta


def body(params: dict, beta: float) -> dict:
    """A supervised job's create params as a dpoJob's: the training settings in training_config,
    the loss DPO with beta."""
    top = ("dataset", "display_name")
    return {"dataset": params["dataset"], "display_name": params["display_name"],
            "training_config": {k: v for k, v in params.items() if k not in top},
            "loss_config": {"method": "DPO", "dpo": {"beta": beta}}}


def start(backend, run_id: str, params: dict, job_id: str, beta: float) -> str:
    """Create the run's dpoJob once: a 409 is an earlier attempt's when it trains on our dataset."""
    import fireworks

    jobs = backend.client.with_options(max_retries=0).dpo_jobs
    sent = body(params, beta)

    def create() -> str:
        try:
            with backend._refusals():
                return job_ref(jobs.create(dpo_job_id=job_id, **sent).name)
        except fireworks.ConflictError:
            return backend._ours(PREFIX + job_id, params["dataset"])

    return backend.create_once(create, backend.find, run_id)


def as_job(job) -> SimpleNamespace:
    """A dpoJob read as a supervised job is (its trainingConfig's fields at the top, no progress or
    update time: the SDK's DpoJob has neither), with its method and beta: so that progress.py and
    listing.py read both resources one way. An answer that is no DPO job is one line."""
    try:
        view = _view(job)
    except (AttributeError, TypeError):  # the SDK builds its models unchecked: a list, text, wrong types
        view = None
    if view is None or not _shaped(view):
        raise BackendError(f"Fireworks answered with something that is no DPO job: {str(job)[:80]!r}",
                           "Check FIREWORKS_BASE_URL, then run the command again; nothing was lost.")
    return view


def _shaped(view: SimpleNamespace) -> bool:
    """Whether what ftm reads of the job has the types the SDK's DpoJob declares."""
    from datetime import datetime

    times = all(isinstance(t, (datetime, type(None))) for t in (view.create_time, view.completed_time))
    return isinstance(view.name, str) and isinstance(view.state, (str, type(None))) and times and \
        (view.status is None or hasattr(view.status, "message"))


def _view(job) -> SimpleNamespace:
    config, loss = job.training_config, job.loss_config

    def get(name):
        return getattr(config, name, None) if config is not None else None

    beta = loss.dpo.beta if loss is not None and loss.dpo is not None else None
    return SimpleNamespace(
        name=job.name, state=job.state, status=job.status, dataset=job.dataset, evaluation_dataset=None,
        create_time=job.create_time, update_time=None, completed_time=job.completed_time, job_progress=None,
        method="dpo", beta=beta if isinstance(beta, (int, float)) else None, **{name: get(name) for name in (
            "base_model", "warm_start_from", "output_model", "epochs", "learning_rate", "lora_rank",
            "batch_size_samples", "max_context_length")})
