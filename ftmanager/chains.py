"""Chains: a run trained on top of an earlier run's model (DPO on an SFT run's result).

The link is data: runs.base_run_id names the run whose model a run starts from, on any backend.
A chain re-runs link by link: the upstream first (or an existing re-run of it there), then the
run on top of its result. A link whose upstream has not finished is recorded at once, "queued"
with no provider job (OpenAI's word for a job that waits its turn), and started by whatever
polls it next (refresh, watch, sync) once the upstream succeeds; cancelled, saying why, if the
upstream fails or is cancelled. The ledger alone holds the plan, so a killed process loses nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from .errors import InvalidInput, NotFound
from .facts import CANCELLED, CREATED, QUEUED, SUCCEEDED, is_terminal
from .ledger import ledger, now
from .mapping import Mapped
from .methods import check_method, method_of

# --- submitting on top of a run ----------------------------------------------------------


def upstream_of(model: str) -> dict | None:
    """The ledger's run whose model `model` names (its result model, or its run id), or None."""
    found = ledger().run_with_model(model)
    if found:
        return found
    if model.startswith("run-"):
        try:
            run = ledger().run(model)
        except (NotFound, InvalidInput):
            return None
        return run if run["id"] == model else None
    return None


def base_for(model: str) -> tuple[str, dict | None]:
    """(the model a submit trains on, the run it comes from): a run id stands for its model.
    Only a succeeded run's model can be trained on, which also keeps a chain from looping."""
    upstream = upstream_of(model)
    if not upstream:
        return model, None
    if upstream["status"] != SUCCEEDED or not upstream["result_model"]:
        raise InvalidInput(f"run {upstream['id']} is {upstream['status']} and has no model to train on top of",
                           f"Wait for it (`ftm watch {upstream['id']}`), or choose a run that succeeded.")
    return upstream["result_model"], upstream


def waiting(run: dict) -> bool:
    """Is run a chain link recorded before its upstream finished, not yet started?"""
    return run["status"] == QUEUED and bool(run.get("base_run_id")) and not run.get("provider_job_id")


def base_weights(run: dict) -> dict | None:
    """Where the upstream's model answers locally (an adapter on its base, or a whole model), so a
    local link trains from it without an export; None for a run on no run's model."""
    if not run.get("base_run_id"):
        return None
    from .pulls import answering

    try:
        impl, up = answering(ledger().run(run["base_run_id"]))
    except NotFound:
        return None
    if impl.name != "local" or not up.get("result_path"):
        return None  # a hosted model: its provider trains on it by name
    return {"run_id": up["id"], "result_path": up["result_path"], "base_model": up["base_model"]}


# --- advancing a waiting link ------------------------------------------------------------


def advance(run: dict, poll: Callable[[str], object]) -> dict:
    """Move a waiting link on: poll its upstream, then make it startable once the upstream
    succeeded (status created, on the upstream's model), or cancel it when it never will."""
    try:
        up = _upstream(run)
    except InvalidInput as err:
        return _cancel(run, err.what)
    if not is_terminal(up["status"]):
        poll(up["id"])
        up = ledger().run(up["id"])
    if up["status"] == SUCCEEDED and up["result_model"]:
        ledger().add_event(run["id"], f"{up['id']} succeeded: starting on top of its model {up['result_model']}",
                           data={"upstream_run_id": up["id"]})
        return ledger().update_run(run["id"], status=CREATED, base_model=up["result_model"])
    if is_terminal(up["status"]):
        return _cancel(run, f"the run it trains on top of, {up['id']}, {up['status']}")
    return ledger().run(run["id"])


def polled_once(refresh: Callable) -> Callable[[str], dict]:
    """A poll for one pass over many runs (sync): each run polled at most once, whether the pass
    reaches it first or a waiting link's check of its upstream does (which then reads what that
    poll recorded). refresh is jobs' (handed in: jobs imports this module)."""
    done: dict[str, dict] = {}

    def poll(run_id: str) -> dict:
        if run_id not in done:
            done[run_id] = refresh(run_id, poll)[0]
        return done[run_id]

    return poll


def _upstream(run: dict) -> dict:
    """run's upstream, refusing one that is gone or a chain that loops back on itself."""
    seen, link = {run["id"]}, run
    while link.get("base_run_id"):
        if link["base_run_id"] in seen:
            raise InvalidInput(f"its chain loops back to {link['base_run_id']}", "")
        seen.add(link["base_run_id"])
        try:
            link = ledger().run(link["base_run_id"])
        except NotFound:
            raise InvalidInput(f"the run it trains on top of, {link['base_run_id']}, no longer exists", "") from None
    return ledger().run(run["base_run_id"])


def _cancel(run: dict, why: str) -> dict:
    ledger().add_event(run["id"], f"cancelled before it started: {why}", "warn")
    return ledger().update_run(run["id"], status=CANCELLED, finished_at=now(), error_code="upstream_not_succeeded",
                               error_message=f"cancelled before it started: {why}")


def cancel_waiting(run: dict) -> dict:
    """Cancel a link still waiting for its upstream: no provider has a job for it."""
    ledger().add_event(run["id"], f"cancelled while waiting for {run['base_run_id']}")
    return ledger().update_run(run["id"], status=CANCELLED, start_claim=None, finished_at=now())


# --- re-running a chain ------------------------------------------------------------------


@dataclass
class ChainMapped(Mapped):
    """A chain link's mapping, with the upstream link it trains on top of: (run, its Mapped or
    None where an existing re-run was reused)."""

    upstream: tuple[dict, Mapped | None] | None = None


def needs_chain(parent: dict, target: str) -> bool:
    """Does re-running parent on target re-run the run it trained on top of first? Yes where
    that model is not on target, or never came to be."""
    if not parent.get("base_run_id"):
        return False
    try:
        up = ledger().run(parent["base_run_id"])
    except NotFound:
        return True  # refused by rerun_chain's checks, in one line
    return target != parent["backend"] or up["status"] != SUCCEEDED


def rerun_chain(parent: dict, target, model: str | None, *, hyperparameters: dict, options: dict,
                suffix, seed, submit: Callable, rerun: Callable) -> tuple[dict, ChainMapped]:
    """Re-run parent's upstream on target (or reuse a succeeded re-run of it there), then parent
    on top of its result: started now, or recorded waiting for it. Refused whole, in one line,
    before anything is recorded, where target cannot run a link. submit and rerun are jobs'
    (handed in: jobs imports this module)."""
    from . import registry
    from .mapping import map_settings

    try:
        up = _upstream(parent)
    except InvalidInput as err:
        raise InvalidInput(f"run {parent['id']} cannot be re-run: {err.what}", "Submit its dataset anew.") from None
    _check_links(parent, target, model)
    mapped = map_settings(parent, registry.load(parent["backend"]), target, hyperparameters, options)
    link_args = dict(hyperparameters=mapped.hyperparameters, options=mapped.options, parent_run_id=parent["id"],
                     suffix=suffix if suffix is not None else parent["suffix"],
                     seed=seed if seed is not None else parent["seed"], validation=parent["validation_dataset_id"])
    link = _reusable(up, target, model)
    if not link:  # this link checked in full (settings, data by target's rules) before the first is made
        planned = {**up, "status": QUEUED, "base_model": model or _root_model(up, target)}
        submit(parent["dataset_id"], target.name, None, after=planned, dry_run=True, **link_args)
    link, link_mapped = (link, None) if link else rerun(up["id"], target.name, model, options=options)
    mapped = ChainMapped(mapped.hyperparameters, mapped.options, mapped.notes, mapped.dropped, (link, link_mapped))
    mapped.notes.append(f"model=the model of {link['id']} (the re-run of {up['id']})")
    return submit(parent["dataset_id"], target.name, None, after=link, **link_args), mapped


def _check_links(parent: dict, target, model: str | None) -> None:
    """Refuse, before any link is recorded, a chain with a link target cannot train."""
    impl, link = target(), parent
    while link:
        check_method(impl, method_of(link), model or impl.default_model or "")
        link = ledger().run(link["base_run_id"]) if link.get("base_run_id") else None


def _reusable(up: dict, target, model: str | None) -> dict | None:
    """A succeeded re-run of up on target (on model, where given) for a chain to build on."""
    done = [c for c in ledger().children(up["id"]) if c["backend"] == target.name and c["status"] == SUCCEEDED
            and c["result_model"] and (model is None or c["base_model"] == model)]
    return done[-1] if done else None


def _root_model(up: dict, target) -> str:
    """The base model the chain's first link will train on target (as a re-run maps it)."""
    from .mapping import map_model

    root = up
    while root.get("base_run_id"):  # _upstream has checked the chain: no loop, nothing missing
        root = ledger().run(root["base_run_id"])
    return map_model(root, target, Mapped({}, {}))


def first_status(after: dict | None, claim: Callable[[], dict]) -> dict:
    """A new run's status and start claim: waiting (no claim: whoever polls it starts it) when
    it is a link whose upstream has not succeeded yet, else created and claimed by this process."""
    if after and after["status"] != SUCCEEDED:
        return {"status": QUEUED, "start_claim": None}
    return {"status": CREATED, "start_claim": claim()}


def link_base(after: dict) -> tuple[str, dict]:
    """(the model a link on top of after trains on, after): its result, or until then its base
    (for the checks at submit; the result takes its place when the link starts)."""
    return (after["result_model"] if after["status"] == SUCCEEDED else after["base_model"]), after


def record_link(run: dict, upstream: dict | None) -> None:
    """The event that says on what the run trains, or what it waits for."""
    if not upstream:
        return
    if waiting(run):
        ledger().add_event(run["id"], f"waits for {upstream['id']} to succeed, then trains on top of its model",
                           data={"upstream_run_id": upstream["id"]})
    else:
        ledger().add_event(run["id"], f"trains on top of {upstream['id']}'s model {upstream['result_model']}",
                           data={"upstream_run_id": upstream["id"]})
