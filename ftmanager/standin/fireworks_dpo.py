"""The Fireworks stand-in's dpoJobs: DPO as Fireworks runs it, a resource of its own beside
supervisedFineTuningJobs, as the official SDK's dpo_jobs calls it.

A create names a READY dataset of preference pairs, a trainingConfig (the supervised job's
settings, nested) and a lossConfig: absent, the loss is DPO; given without a method, Fireworks
reads it as GRPO (its SDK says so), which trains on prompts and a reward rather than pairs, so
the stand-in refuses it. lossConfig.dpo.beta is above 0 and below 0.5. While VALIDATING the job
checks the pairs by Fireworks' DPO rules (roles system, user and assistant in the input, one
assistant answer each side, text only) and fails on the first that breaks one; then it trains
on the clock like any job.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from ..front.state import Job
from .fireworks_common import (DEFAULTS, PREFERENCE, base_of, checked_rate, failed, job_id_asked, launched, list_page,
                               output_model, ready_dataset, whole_numbers)

RESOURCE = "dpoJobs"
DEFAULT_BETA = 0.1  # what the stand-in trains with when lossConfig.dpo names no beta
MAX_BETA = 0.5  # the SDK's DpoConfig: beta "must be > 0 and < 0.5"
FIELDS = {"dataset", "displayName", "lossConfig", "trainingConfig", "wandbConfig", "awsS3Config",
          "azureBlobStorageConfig", "rendererHuggingFaceRepoId", "reservationTarget", "useReservation"}
TRAINING_FIELDS = {"baseModel", "warmStartFrom", "outputModel", "epochs", "learningRate", "loraRank", "batchSize",
                   "batchSizeSamples", "maxContextLength", "gradientAccumulationSteps", "jinjaTemplate",
                   "learningRateWarmupSteps", "optimizerWeightDecay", "region", "samplerCheckpointSaveIntervalSteps"}
LOSSES = ("DPO", "ORPO")  # the preference losses a dpoJob trains with
INPUT_ROLES = ("system", "user", "assistant")


def key(job_id: str) -> str:
    """Where the clock keeps a dpoJob: apart from supervised jobs of the same id."""
    return f"{RESOURCE}/{job_id}"


def is_dpo(job_key: str) -> bool:
    return job_key.startswith(f"{RESOURCE}/")


def job_api(service, job: Job) -> dict:
    """A dpoJob in Fireworks' shape (the SDK's DpoJob: no jobProgress or updateTime)."""
    asked = service.requests[job.id]
    body = {k: v for k, v in asked.items() if k not in ("account", "resource")}
    return {**body, "name": f"accounts/{asked['account']}/{job.id}", **service.times(job)}


# --- the routes ----------------------------------------------------------------------------


def create_job(srv, req):
    body, account = req.json(), req.params[0]
    job_id = job_id_asked(req, "dpoJobId", "dpoj")
    if key(job_id) in srv.state.jobs:
        raise failed(409, f"DpoJob accounts/{account}/{RESOURCE}/{job_id} already exists")
    asked = _checked(srv, account, job_id, body)
    config = asked["trainingConfig"]
    base = base_of(srv, account, config)
    train = ready_dataset(srv, account, asked["dataset"], "dataset", PREFERENCE)
    job = Job(id=key(job_id), model=base, training_file=train.name, training_path=train.path,
              organization_id=account, created_at=time.time(), method="dpo",
              requested={"n_epochs": config["epochs"], "batch_size": config.get("batchSizeSamples", "auto"),
                         "learning_rate_multiplier": "auto", "beta": asked["lossConfig"]["dpo"]["beta"]})
    return launched(srv, job, {"account": account, "resource": RESOURCE, **asked})


def _checked(srv, account: str, job_id: str, body: dict) -> dict:
    """The create body with Fireworks' defaults filled in, or the 400 naming what is wrong."""
    unknown = sorted(set(body) - FIELDS)
    if unknown:
        raise failed(400, f"unknown field {unknown[0]!r} in DpoJob")
    config = body.get("trainingConfig") if isinstance(body.get("trainingConfig"), dict) else {}
    unknown = sorted(set(config) - TRAINING_FIELDS)
    if unknown:
        raise failed(400, f"unknown field {unknown[0]!r} in DpoJob.trainingConfig")
    config = {**DEFAULTS, **config}
    whole_numbers(config, ("epochs", "loraRank", "batchSizeSamples", "maxContextLength"), "trainingConfig.")
    checked_rate(config, "trainingConfig.")
    config["outputModel"] = output_model(account, config.get("outputModel"), job_id)
    return {**body, "trainingConfig": config, "lossConfig": _loss(body.get("lossConfig"))}


def _loss(given) -> dict:
    """lossConfig with its method and beta: DPO when absent; beta checked, or the default."""
    if given is None:
        given = {"method": "DPO"}
    if not isinstance(given, dict):
        raise failed(400, "lossConfig must be an object")
    method = given.get("method") or "GRPO"  # METHOD_UNSPECIFIED: GRPO, as the SDK documents
    if method not in LOSSES:
        raise failed(400, f"lossConfig.method {method} trains on prompts and a reward, not on preference pairs: "
                     f"a dpoJob takes {' or '.join(LOSSES)}")
    dpo = given.get("dpo") if isinstance(given.get("dpo"), dict) else {}
    beta = dpo.get("beta", DEFAULT_BETA)
    if isinstance(beta, bool) or not isinstance(beta, (int, float)) or not 0 < beta < MAX_BETA:
        raise failed(400, f"lossConfig.dpo.beta must be above 0 and below {MAX_BETA}, not {beta!r}")
    return {**given, "method": method, "dpo": {**dpo, "beta": beta}}


def get_job(srv, req):
    return srv.service.job_api(srv.service.job_for(*req.params, resource=RESOURCE))


def list_jobs(srv, req):
    jobs = srv.service.jobs_of(req.params[0], RESOURCE)
    page, more = list_page(req, jobs)
    for job in page:
        srv.service.refresh(job)
    return {"dpoJobs": [srv.service.job_api(j) for j in page], "nextPageToken": more, "totalSize": len(jobs)}


def cancel_job(srv, req):
    job = srv.service.job_for(*req.params, resource=RESOURCE)
    if job.status in ("succeeded", "failed", "cancelled"):
        raise failed(400, f"job {req.params[1]} is {srv.service.times(job)['state']} and cannot be cancelled")
    srv.service.cancel(job)
    return {}


def delete_job(srv, req):
    job = srv.service.job_for(*req.params, resource=RESOURCE)
    del srv.state.jobs[job.id], srv.service.requests[job.id]
    return {}


ROUTES = [
    ("POST", "/accounts/{a}/dpoJobs", create_job, True),
    ("GET", "/accounts/{a}/dpoJobs", list_jobs, True),
    ("GET", "/accounts/{a}/dpoJobs/{id}", get_job, True),
    ("DELETE", "/accounts/{a}/dpoJobs/{id}", delete_job, True),
    ("POST", "/accounts/{a}/dpoJobs/{id}:cancel", cancel_job, True),
]


# --- Fireworks' rules for preference pairs, checked while a job is VALIDATING --------------------


def data_problem(path: Path) -> str | None:
    """Why Fireworks' DPO would refuse the pairs in path (the first that breaks a rule), or None."""
    with open(path, "rb") as fh:
        for n, raw in enumerate(fh, 1):
            if raw.strip():
                problem = _pair_problem(json.loads(raw))
                if problem:
                    return f"Invalid DPO dataset: line {n}: {problem}"
    return None


def _pair_problem(pair: dict) -> str | None:
    given = pair.get("input") or {}
    for where, messages in (("input.messages", given.get("messages") or []),
                            ("preferred_output", pair.get("preferred_output") or []),
                            ("non_preferred_output", pair.get("non_preferred_output") or [])):
        roles = INPUT_ROLES if where == "input.messages" else ("assistant",)
        for i, m in enumerate(messages, 1):
            if not isinstance(m, dict) or m.get("role") not in roles:
                role = m.get("role") if isinstance(m, dict) else None
                return f"{where}[{i}]: role {role!r} is not one of {', '.join(roles)}"
            if not isinstance(m.get("content"), str):
                return f"{where}[{i}]: content must be text"
    return None
