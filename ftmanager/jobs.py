"""Runs: submit, follow, recover, cancel. The only module that knows both the ledger and backends.

The rule that makes every crash explainable: a run is written to the ledger (status
"created") before its backend is called, and a run left "created" without a provider job is
recovered by asking the backend to find the job by our run id before starting it again.
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path
from typing import Callable

from . import registry
from . import paths
from .backend import Backend, Progress, RunSpec, Uploads
from .facts import CANCELLED, CREATED, FAILED, PAUSED, QUEUED, RUNNING, SEED_MAX, SUCCEEDED, SUFFIX_MAX, is_terminal
from .hyperparameters import Hyperparameters
from .errors import BackendError, FtmError, InvalidInput, Refused, without_userinfo
from . import chains
from .mapping import Mapped, map_model, map_settings
from .methods import check_method, label, require_kind
from .catalog import dataset, dataset_arg, split_dataset
from .ledger import ledger, now as _now

# --- submitting --------------------------------------------------------------------------


def submit(dataset_ref: str, backend: str, model: str | None = None, *,
           hyperparameters: Hyperparameters | dict | None = None, suffix: str | None = None, seed: int | None = None,
           validation: str | None = None, split: float | None = None, options: dict | None = None,
           parent_run_id: str | None = None, wait: bool = False, on_update: Callable | None = None,
           after: dict | None = None, dry_run: bool = False) -> dict:
    """Record a run, then start it on the backend. Returns the run (finished if wait; with
    dry_run, the row it would record, after every check, and nothing recorded).

    A model that is a ledger run's (its result, or its run id) makes a chain link on top of that
    run; after: the upstream link of a re-run chain, which the run waits for until it succeeds."""
    ledger().writable()
    impl = registry.get(backend)
    model, upstream = chains.link_base(after) if after else chains.base_for(model or impl.default_model or "")
    if not model:
        raise InvalidInput(f"the {backend} backend needs a base model", "Give one with --model.")
    impl.check_model(model)
    impl.check_options(options or {})
    _check_suffix_seed(suffix, seed)
    hp = Hyperparameters.of(hyperparameters)  # checked here, once: the ledger and the backend get this record
    check_method(impl, hp.method, model)
    train, valid, split_info = _training_data(dataset_ref, validation, split, seed, model)
    require_kind(hp.method, train, valid)
    rules = impl.name if impl.data_rules else None  # the backend's own data rules, found by its name
    report = _refuse_invalid(train, model, rules)
    if valid and rules:
        _refuse_invalid(valid, model, rules)
    row = {"id": _new_run_id(), "backend": backend, "base_model": model, "dataset_id": train["id"],
           "validation_dataset_id": valid["id"] if valid else None, "split": split_info,
           "hyperparameters": hp.to_dict(), "options": options or {}, "suffix": suffix, "seed": seed,
           "parent_run_id": parent_run_id, "base_run_id": upstream["id"] if upstream else None,
           **chains.first_status(after, _claim)}
    spec = _spec(row, train, valid)
    resolved = impl.resolve(spec)
    row.update(estimated_cost=_estimate(impl, spec, report, resolved), resolved_hyperparameters=resolved)
    if dry_run:
        return row
    created = ledger().create_run(row)
    chains.record_link(created, upstream)
    run = created if chains.waiting(created) else _start(created, impl, spec)
    if wait:
        return watch(run["id"], on_update)
    return refresh(run["id"])[0]  # one poll, so the status shown is the provider's


def rerun(ref: str, backend: str, model: str | None = None, *,
          hyperparameters: dict | None = None, options: dict | None = None, suffix: str | None = None,
          seed: int | None = None, wait: bool = False, on_update: Callable | None = None) -> tuple[dict, Mapped]:
    """Re-run a run's dataset (and validation set) on another backend, linked to its parent.

    Needs nothing from the parent's provider: the data lives in the ledger. Given settings
    override the parent's; the rest are mapped across (Mapped says how, and what could not be).
    """
    parent = ledger().run(ref)
    if parent.get("imported_at"):  # adopted from a provider's history: its data may be missing
        from .adopting import check_rerun

        check_rerun(parent)
    source, target = registry.load(parent["backend"]), registry.load(backend)
    if chains.needs_chain(parent, backend):  # on top of an earlier run's model: that run first
        run, mapped = chains.rerun_chain(parent, target, model, hyperparameters=hyperparameters or {},
                                         options=options or {}, suffix=suffix, seed=seed, submit=submit, rerun=rerun)
    else:
        mapped = map_settings(parent, source, target, hyperparameters or {}, options or {})
        model = model or map_model(parent, target, mapped)
        run = submit(parent["dataset_id"], backend, model, hyperparameters=mapped.hyperparameters,
                     suffix=suffix if suffix is not None else parent["suffix"],
                     seed=seed if seed is not None else parent["seed"],
                     validation=parent["validation_dataset_id"], options=mapped.options, parent_run_id=parent["id"])
    ledger().add_event(run["id"], f"re-run of {parent['id']} ({parent['backend']}): {mapped.summary()}")
    return (watch(run["id"], on_update) if wait else run), mapped


def _new_run_id() -> str:
    import secrets  # late, like socket and traceback below: `ftm runs` never needs them

    return f"run-{secrets.token_hex(4)}"


def _check_suffix_seed(suffix, seed) -> None:
    if suffix is not None and not 1 <= len(suffix) <= SUFFIX_MAX:
        raise InvalidInput(f"--suffix must be 1 to {SUFFIX_MAX} characters, not {len(suffix)}", "")
    if seed is not None and not 0 <= seed <= SEED_MAX:
        raise InvalidInput(f"--seed must be between 0 and {SEED_MAX}, not {seed}", "")


def _training_data(dataset_ref, validation, split, seed, model) -> tuple[dict, dict | None, dict | None]:
    if validation and split:
        raise InvalidInput("--validation and --split cannot be used together", "Choose one.")
    train = dataset_arg(dataset_ref, model)
    if validation:
        return train, dataset_arg(validation, model), None
    if split:
        seed = 0 if seed is None else seed
        train, valid = split_dataset(train, split, seed)
        return train, valid, {"fraction": split, "seed": seed}
    return train, None, None


def _refuse_invalid(ds: dict, model: str, provider: str | None = None):
    """Refuse, before anything is recorded, data the provider would reject (by its own rules
    too, where the backend names them); else its Report."""
    from . import data

    report = data.validate(Path(ds["path"]), model=model, provider=provider)
    if not report.ok:
        rules = f" --provider {provider}" if provider else ""
        raise InvalidInput(
            f"dataset {ds['id'][:12]} has {report.n_errors():,} problem(s) for {model} (first: {report.first_error()})",
            f"Run `ftm datasets validate {ds['path']} --model {model}{rules}` to see them all.",
        )
    return report


def _estimate(impl: Backend, spec: RunSpec, report, resolved: dict) -> float | None:
    """The run's cost from the validation report already made for it (no second read), for the
    epochs the backend will train (its own default for "auto")."""
    from . import data

    n_epochs = resolved.get("n_epochs", spec.hyperparameters.n_epochs)
    try:
        estimate = data.estimate(report, spec.base_model, n_epochs)
    except FtmError:
        return None
    return impl.estimate_cost(spec, estimate.get("billed_tokens"))


def _spec_for(run: dict) -> RunSpec:
    """Rebuild a run's RunSpec from the ledger alone."""
    train = ledger().dataset(run["dataset_id"])
    valid = ledger().dataset(run["validation_dataset_id"]) if run["validation_dataset_id"] else None
    return _spec(run, train, valid)


def _spec(run: dict, train: dict, valid: dict | None) -> RunSpec:
    return RunSpec(
        run_id=run["id"],
        base_model=run["base_model"],
        training_file=Path(train["path"]),
        dataset_id=train["id"],
        n_examples=train["n_examples"],
        run_dir=paths.runs_dir() / run["id"],  # created by _start, not before the run is recorded
        validation_file=Path(valid["path"]) if valid else None,
        validation_dataset_id=valid["id"] if valid else None,
        hyperparameters=Hyperparameters.of(run["hyperparameters"]),
        suffix=run["suffix"],
        seed=run["seed"],
        options=run["options"] or {},
        base_weights=chains.base_weights(run),
    )


class _Uploads(Uploads):
    """The ledger's uploads table, as a backend sees it."""

    def __init__(self, backend: str):
        self.backend = backend

    def get(self, dataset_id: str, account: str) -> str | None:
        row = ledger().upload(dataset_id, self.backend, account)
        return row["file_id"] if row else None

    def put(self, dataset_id: str, account: str, file_id: str, nbytes: int) -> None:
        ledger().put_upload(dataset_id, self.backend, account, file_id, nbytes)

    def forget(self, dataset_id: str, account: str) -> None:
        ledger().forget_upload(dataset_id, self.backend, account)

    @contextlib.contextmanager
    def lock(self, dataset_id: str, account: str):
        """A lock file under FTM_HOME held across processes (the OS frees it if one dies)."""
        import fcntl
        import hashlib

        key = hashlib.sha256(f"{self.backend}\0{account}\0{dataset_id}".encode()).hexdigest()[:32]
        with open(paths.locks_dir() / f"upload-{key}.lock", "a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            yield


def _claim() -> dict:
    """This process's claim on a run's start: another process waits while it is alive."""
    import socket

    return {"host": socket.gethostname(), "pid": os.getpid(), "since": time.time()}


def _start(run: dict, impl: Backend, spec: RunSpec) -> dict:
    """Call backend.start; a definite refusal fails the run, anything else leaves it recoverable."""
    spec.run_dir.mkdir(parents=True, exist_ok=True)
    try:
        job_id = impl.start(spec, _Uploads(impl.name))
    except Refused as err:
        ledger().update_run(run["id"], status=FAILED, start_claim=None, error_code="start_refused",
                           error_message=err.line(), finished_at=_now())
        raise
    except Exception as err:
        raise _unconfirmed(run, impl, err) from err
    ledger().add_event(run["id"], f"started {impl.name} job {job_id}")
    return ledger().update_run(run["id"], provider_job_id=job_id, start_claim=None)


def _unconfirmed(run: dict, impl: Backend, err: Exception) -> BackendError:
    """Leave the run `created` for `ftm sync` (which finds its job or starts it) and say so."""
    import traceback

    detail = without_userinfo(err.line() if isinstance(err, FtmError) else f"{type(err).__name__}: {err}")
    with contextlib.suppress(FtmError):  # a ledger that failed start() may fail here too: the
        ledger().update_run(run["id"], start_claim=None)  # claim then dies with this process
        ledger().add_event(run["id"], f"start interrupted ({detail})", "error",
                           {"traceback": without_userinfo(traceback.format_exc())})
    return BackendError(
        f"could not confirm that run {run['id']} started on {impl.name} ({detail.rstrip('.')})",
        "Run `ftm sync` to find the job or start it; it is never created twice.",
    )


# --- following ---------------------------------------------------------------------------


def _claim_is_live(claim: dict) -> bool:
    """Is the process that claimed a run's start, on this machine, still alive?"""
    import socket

    if claim.get("host") != socket.gethostname():
        return False
    try:
        os.kill(claim["pid"], 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def _recover(run: dict, impl: Backend) -> dict:
    """A run left `created` with no job: find its job by our id, or start it now."""
    if not ledger().claim_start(run["id"], _claim(), _claim_is_live):
        return ledger().run(run["id"])  # another process is starting it, or has
    try:
        job_id = impl.find(run["id"])
    except BaseException:
        ledger().update_run(run["id"], start_claim=None)
        raise
    if job_id:
        ledger().add_event(run["id"], f"found {impl.name} job {job_id} created by an interrupted start")
        return ledger().update_run(run["id"], provider_job_id=job_id, start_claim=None)
    return _start(run, impl, _spec_for(run))


def refresh(ref: str, poll: Callable | None = None) -> tuple[dict, Progress | None]:
    """Poll a run's backend once and record what it reports. A waiting chain link's upstream is
    polled first, by poll where given (sync's, which polls each run once a pass)."""
    run = ledger().run(ref)
    if is_terminal(run["status"]):
        return run, None
    impl = registry.get(run["backend"])
    if chains.waiting(run):  # a chain link: its upstream polled first, then it may start
        run = chains.advance(run, poll or refresh)
        if run["status"] != CREATED:
            return run, None
    if not run["provider_job_id"]:
        run = _recover(run, impl)
        if not run["provider_job_id"]:
            return run, None
    progress = impl.poll(run["provider_job_id"], run["cursor"] or {})
    if run["status"] == PAUSED and progress.status == RUNNING:
        progress.status = PAUSED  # a pause recorded at once: the worker is finishing its step
    return ledger().record(run["id"], progress), progress


def watch(ref: str, on_update: Callable | None = None) -> dict:
    """Follow a run until it reaches a terminal status; on_update(run, progress) after each poll."""
    run = ledger().run(ref)
    impl = registry.get(run["backend"])
    interval = None
    while True:
        run, progress = refresh(run["id"])
        if on_update:
            on_update(run, progress)
        if is_terminal(run["status"]):
            return run
        interval = impl.poll_interval(run["status"], interval)
        time.sleep(interval)


def sync() -> list[dict]:
    """Poll every unfinished run once. Returns one {run, error} per run."""
    results, poll = [], chains.polled_once(refresh)
    for run in ledger().unfinished_runs():
        try:
            results.append({"run": poll(run["id"]), "error": None})
        except Exception as err:  # noqa: BLE001  (one run's trouble must not stop the others' polls)
            error = err.line() if isinstance(err, FtmError) else f"{type(err).__name__}: {err}"
            results.append({"run": ledger().run(run["id"]), "error": without_userinfo(error)})
    return results


def cancel(ref: str, *, at_once: bool = False) -> dict:
    """Ask the backend to stop a run; a run that never reached a backend is cancelled here.

    at_once: record the run cancelled now, as OpenAI's API answers (ftm serve), rather than when
    the backend next reports it (a local worker first finishes its step and saves a checkpoint).
    """
    run = ledger().run(ref)
    if is_terminal(run["status"]):
        raise InvalidInput(f"run {run['id']} already {run['status']}", "Nothing to cancel.")
    if chains.waiting(run):
        return chains.cancel_waiting(run)
    impl = registry.get(run["backend"])
    if not run["provider_job_id"]:
        job_id = impl.find(run["id"])
        if not job_id:
            ledger().add_event(run["id"], "cancelled before any job was created")
            return ledger().update_run(run["id"], status=CANCELLED, start_claim=None, finished_at=_now())
        ledger().update_run(run["id"], provider_job_id=job_id)
        run["provider_job_id"] = job_id
    impl.cancel(run["provider_job_id"])
    ledger().add_event(run["id"], "cancel requested")
    run = refresh(run["id"])[0]
    if at_once and not is_terminal(run["status"]):
        run = ledger().update_run(run["id"], status=CANCELLED, finished_at=_now())
    return run


def pause(ref: str, *, at_once: bool = False) -> dict:
    """Ask the backend to pause a running run; at_once: record it paused now (see cancel)."""
    run = _live_run(ref)
    registry.get(run["backend"]).pause(run["provider_job_id"])
    ledger().add_event(run["id"], "pause requested")
    run = refresh(run["id"])[0]
    if at_once and run["status"] == RUNNING:
        run = ledger().update_run(run["id"], status=PAUSED)
    return run


def resume(ref: str) -> dict:
    """Resume a paused run (or, where the backend can, an interrupted one)."""
    run = ledger().run(ref)
    if run["status"] == SUCCEEDED:
        raise InvalidInput(f"run {run['id']} already succeeded", "Nothing to resume.")
    if not run["provider_job_id"]:
        raise InvalidInput(f"run {run['id']} has no {run['backend']} job to resume (it is {run['status']})",
                           "`ftm sync` finds the job of an interrupted start, or starts it.")
    impl = registry.get(run["backend"])
    job_id = impl.resume(run["provider_job_id"], _spec_for(run))
    fields = {"provider_job_id": job_id} if job_id else {}
    if is_terminal(run["status"]):
        fields.update(status=QUEUED, finished_at=None, error_code=None, error_message=None, error_param=None)
    elif run["status"] == PAUSED:
        fields["status"] = QUEUED  # no longer held paused: the next poll says where the worker is
    ledger().update_run(run["id"], **fields)
    ledger().add_event(run["id"], "resume requested")
    return refresh(run["id"])[0]


def _live_run(ref: str) -> dict:
    run = ledger().run(ref)
    if is_terminal(run["status"]) or not run["provider_job_id"]:
        raise InvalidInput(f"run {run['id']} is {run['status']}", "Only a running job can be paused.")
    return run


# --- reading -----------------------------------------------------------------------------


def runs(backend=None, status=None, dataset_ref=None, limit=None) -> list[dict]:
    dataset_id = dataset(dataset_ref)["id"] if dataset_ref else None
    return ledger().runs(backend=backend, status=status, dataset_id=dataset_id, limit=limit)


def show(ref: str) -> dict:
    """A run with its events, metrics and checkpoints (and the run it trains on top of)."""
    run = ledger().run(ref)
    return {
        **run,
        "on_top_of": label(run.get("base_run_id")),
        "events": ledger().events(run["id"]),
        "metrics": ledger().metrics(run["id"]),
        "checkpoints": ledger().checkpoints(run["id"]),
    }


def models() -> list[dict]:
    return ledger().models()


def backends() -> list[dict]:
    """Each registered backend with its description, default model and options."""
    rows = []
    for name in registry.names():
        try:
            cls = registry.load(name)
        except Exception as err:  # a broken plugin must not hide the others
            rows.append({"name": name, "description": f"cannot load: {type(err).__name__}: {err}",
                         "default_model": None, "options": {}})
            continue
        options = {key: {"help": o.help, "type": o.type.__name__, "default": o.default}
                   for key, o in cls.declared_options().items()}
        rows.append({"name": name, "description": cls.description,
                     "default_model": cls.default_model, "options": options})
    return rows


# --- using the result --------------------------------------------------------------------


def _succeeded(ref: str) -> dict:
    run = ledger().run(ref)
    if run["status"] != SUCCEEDED or not run["result_model"]:
        raise InvalidInput(f"run {run['id']} is {run['status']} and has no model yet",
                           f"Wait for it: `ftm watch {run['id']}`.")
    return run


def generate(ref: str, conversations: list[list[dict]], max_new_tokens: int = 256) -> list[str]:
    """Answer each conversation with a succeeded run's model (pulled weights answer here)."""
    from .pulls import answering

    impl, run = answering(_succeeded(ref))
    return impl.generate(run["result_model"], run["result_path"], run["base_model"], conversations,
                         max_new_tokens=max_new_tokens)


def export(ref: str, out_dir: str | Path, merge: bool = True) -> Path:
    """Write a run's weights (merged, or the adapter) with tokenizer and chat template."""
    run = _succeeded(ref)
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()):
        raise InvalidInput(f"{out} is not empty", "Choose a new directory with -o.")
    from .pulls import answering
    from .tempfiles import built_in_place  # a killed export leaves no half-written folder at `out`

    backend, used = answering(run)
    if used is not run and not used["result_path"]:
        raise InvalidInput(f"run {run['id']}'s pulled weights are a whole model already, at {used['base_model']}",
                           "Load that folder with from_pretrained, or copy it.")
    run = used
    return built_in_place(out, lambda tmp: backend.export(run["result_path"], run["base_model"], str(tmp), merge=merge))


def pull(ref: str, merged: bool = False) -> dict:
    """Bring home what a hosted run trained (its LoRA adapter; merged weights with merged) into
    the run's folder under FTM_HOME and record it: from then on the run answers like a local one."""
    from . import pulls

    ledger().writable()
    run = _succeeded(ref)
    impl = registry.get(run["backend"])
    where = pulls.fetch(impl, run, paths.run_dir(run["id"]), merged)
    if str(where) != run["result_path"]:
        kind = "merged weights" if merged else "the adapter"
        ledger().add_event(run["id"], f"pulled {kind} from {impl.name} into "
                           f"{paths.to_ledger(str(where), paths.home())} ({pulls.size(where) / 1e6:.1f} MB)")
    return ledger().update_run(run["id"], result_path=str(where))
