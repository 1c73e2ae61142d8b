"""A stand-in for Fireworks AI's fine-tuning API, on the shared front, with jobs on the clock.

    from ftmanager.standin.fireworks import standin
    with standin(speed=20, adapter=adapter_dir) as srv:   # FIREWORKS_BASE_URL=srv.url
        ...

Account-scoped paths under /v1/accounts/{account}/, camelCase fields, errors in the gateway's
shape ({code, message, details}, code a gRPC number). A dataset is created with its
exampleCount, uploaded (checked against that count and Fireworks' rules), then READY a moment
later (fireworks_common.py); supervisedFineTuningJobs and dpoJobs (fireworks_dpo.py) take a
client-chosen id (a second create of one id is a 409) and move JOB_STATE_VALIDATING -> PENDING
-> RUNNING -> COMPLETED on the stand-in's clock (clock.ClockService, whose OpenAI statuses are
shown in Fireworks' words). A completed job's output model is downloadable through
`models/{id}:getDownloadEndpoint`: signed URLs (no key, as a bucket's are) to the files of the
adapter a test hands the stand-in.
"""

from __future__ import annotations

import secrets
import time
from pathlib import Path

from . import fireworks_dpo as dpo
from .clock import ClockService
from .fireworks_common import (DEFAULTS, MIN_EXAMPLES, Dataset, base_of, checked_rate, create_dataset,
                               dataset_download_endpoint, delete_dataset, error_body, failed, get_dataset,
                               job_id_asked, launched, list_datasets, list_page, output_model, ready_dataset, stamp,
                               upload_dataset, whole_numbers)
from .standin_server import StandinServer
from ..front.request import Raw
from ..front.router import route_table
from ..front.state import ApiError, Job

__all__ = ["FireworksClock", "FireworksServer", "error_body", "stamp", "standin"]

# Base models the stand-in fine-tunes (models.toml lists their limits and prices for ftm).
BASE_MODELS = tuple(f"accounts/fireworks/models/{name}" for name in (
    "llama-v3p1-8b-instruct", "llama-v3p1-70b-instruct", "llama-v3p2-1b-instruct",
    "llama-v3p2-3b-instruct", "qwen2p5-7b-instruct", "qwen3-8b"))
STATES = {"validating_files": "JOB_STATE_VALIDATING", "queued": "JOB_STATE_PENDING",
          "running": "JOB_STATE_RUNNING", "succeeded": "JOB_STATE_COMPLETED",
          "failed": "JOB_STATE_FAILED", "cancelled": "JOB_STATE_CANCELLED"}
JOB_FIELDS = {"dataset", "baseModel", "warmStartFrom", "outputModel", "displayName", "epochs",
              "learningRate", "loraRank", "batchSize", "batchSizeSamples", "maxContextLength",
              "evaluationDataset", "earlyStop", "jinjaTemplate", "evalAutoCarveout", "isTurbo",
              "gradientAccumulationSteps", "learningRateWarmupSteps", "optimizerWeightDecay",
              "nodes", "region", "wandbConfig", "mtpEnabled", "mtpNumDraftTokens", "mtpFreezeBaseModel"}


class FireworksClock(ClockService):
    """The clock service, holding what Fireworks adds: datasets, each job's request, adapters.

    Supervised jobs are kept under their id, DPO jobs under dpoJobs/<id> (fireworks_dpo.key):
    the two resources have ids of their own."""

    min_examples = MIN_EXAMPLES

    def __init__(self, speed: float = 1.0, adapter: Path | None = None, phases: dict | None = None):
        super().__init__(speed=speed, results_base64="never", phases={"dataset": 1.0, **(phases or {})})
        self.datasets: dict[tuple[str, str], Dataset] = {}
        self.requests: dict[str, dict] = {}  # job key -> {"account", the create body with defaults}
        self.adapter = adapter  # the files every completed job's model downloads as
        self.signed: dict[str, Path] = {}  # token -> the file a signed URL gives

    def base_models(self) -> tuple[str, ...]:
        return BASE_MODELS

    def dataset(self, account: str, dataset_id: str) -> Dataset:
        found = self.datasets.get((account, dataset_id))
        if found is None:
            raise failed(404, f"Dataset accounts/{account}/datasets/{dataset_id} not found")
        return found

    def job_for(self, account: str, job_id: str, resource: str = "supervisedFineTuningJobs") -> Job:
        """The account's job of that resource (refreshed), or the 404."""
        key = dpo.key(job_id) if resource == dpo.RESOURCE else job_id
        job = self.state.jobs.get(key)
        if job is None or self.requests[key]["account"] != account:
            kind = "DpoJob" if resource == dpo.RESOURCE else "SupervisedFineTuningJob"
            raise failed(404, f"{kind} accounts/{account}/{resource}/{job_id} not found")
        self.refresh(job)
        return job

    def jobs_of(self, account: str, resource: str) -> list[Job]:
        """The account's jobs of one resource, oldest first."""
        return [j for j in self.state.jobs.values()
                if self.requests[j.id]["account"] == account and _resource(self.requests[j.id]) == resource]

    def job_api(self, job: Job) -> dict:
        """The job in Fireworks' shape: its request, its state in Fireworks' words, its progress."""
        if dpo.is_dpo(job.id):
            return dpo.job_api(self, job)
        asked, sim = self.requests[job.id], self._sims.get(job.id)
        body = {k: v for k, v in asked.items() if k != "account"}
        out = {**body, "name": f"accounts/{asked['account']}/supervisedFineTuningJobs/{job.id}",
               **self.times(job), "updateTime": stamp(_updated(job))}
        if sim and sim.total_steps:
            done = sim.step / sim.total_steps
            epoch = min(sim.step // sim.steps_per_epoch, sim.total_steps // sim.steps_per_epoch - 1)
            out["jobProgress"] = {"percent": int(100 * done), "epoch": epoch,  # counted from 0
                                  "inputTokens": int(sim.tokens * sim.step / sim.steps_per_epoch)}
        return out

    def times(self, job: Job) -> dict:
        """What every job of either resource says of its state and times."""
        return {"state": STATES.get(job.status, job.status), "createTime": stamp(job.created_at),
                "completedTime": stamp(job.finished_at), "createdBy": "standin@ftm.invalid", "status": _status(job)}

    def trained(self, job: Job) -> dict:
        """The training settings of a job (a dpoJob keeps them in its trainingConfig)."""
        asked = self.requests[job.id]
        return asked["trainingConfig"] if dpo.is_dpo(job.id) else asked

    def output_model(self, account: str, model_id: str) -> Job:
        """The completed job whose output model this is, or the 404."""
        name = f"accounts/{account}/models/{model_id}"
        for job in self.state.jobs.values():
            self.refresh(job)
            if self.trained(job)["outputModel"] == name and job.status == "succeeded":
                return job
        raise failed(404, f"Model {name} not found")

    def _validated(self, job: Job, sim, at: float) -> None:
        """A DPO job's data checked by Fireworks' own rules for preference pairs first."""
        problem = dpo.data_problem(job.training_path) if dpo.is_dpo(job.id) else None
        if problem:
            job.emit(problem, at, level="error")
            return self._end(job, sim, "failed", at, {"code": "invalid_dataset", "message": problem, "param": None})
        super()._validated(job, sim, at)


def _resource(asked: dict) -> str:
    return asked.get("resource", "supervisedFineTuningJobs")


def _updated(job: Job) -> float:
    return job.events[-1]["created_at"] if job.events else job.created_at


def _status(job: Job) -> dict:
    if job.status == "failed":
        return {"code": "INVALID_ARGUMENT", "message": (job.error or {}).get("message", "")}
    if job.status == "cancelled":
        return {"code": "CANCELLED", "message": "Job was cancelled"}
    return {"code": "OK", "message": ""}


# --- supervised fine-tuning jobs -------------------------------------------------------------


def create_job(srv, req):
    body, account = req.json(), req.params[0]
    job_id = job_id_asked(req, "supervisedFineTuningJobId", "sftj")
    if job_id in srv.state.jobs:
        raise failed(409, f"SupervisedFineTuningJob accounts/{account}/supervisedFineTuningJobs/{job_id} already exists")
    asked = _checked_request(srv, account, job_id, body)
    base = base_of(srv, account, asked)
    train = ready_dataset(srv, account, asked["dataset"], "dataset")
    valid = ready_dataset(srv, account, asked["evaluationDataset"], "evaluationDataset") if asked.get("evaluationDataset") else None
    job = Job(id=job_id, model=base, training_file=train.name, training_path=train.path,
              validation_file=valid.name if valid else None, validation_path=valid.path if valid else None,
              organization_id=account, created_at=time.time(),
              requested={"n_epochs": asked["epochs"], "batch_size": asked.get("batchSizeSamples", "auto"),
                         "learning_rate_multiplier": "auto"})
    return launched(srv, job, {"account": account, **asked})


def _checked_request(srv, account: str, job_id: str, body: dict) -> dict:
    """The create body with Fireworks' defaults filled in, or the 400 naming what is wrong."""
    unknown = sorted(set(body) - JOB_FIELDS)
    if unknown:
        raise failed(400, f"unknown field {unknown[0]!r} in SupervisedFineTuningJob")
    asked = {**DEFAULTS, **body}
    whole_numbers(asked, ("epochs", "loraRank", "batchSizeSamples", "maxContextLength"))
    checked_rate(asked)
    asked["outputModel"] = output_model(account, asked.get("outputModel"), job_id)
    return asked


def get_job(srv, req):
    return srv.service.job_api(srv.service.job_for(*req.params))


def list_jobs(srv, req):
    jobs = srv.service.jobs_of(req.params[0], "supervisedFineTuningJobs")
    page, more = list_page(req, jobs)
    for job in page:
        srv.service.refresh(job)
    return {"supervisedFineTuningJobs": [srv.service.job_api(j) for j in page], "nextPageToken": more,
            "totalSize": len(jobs)}


def cancel_job(srv, req):
    job = srv.service.job_for(*req.params)
    if job.status in ("succeeded", "failed", "cancelled"):
        raise failed(400, f"job {job.id} is {STATES[job.status]} and cannot be cancelled")
    srv.service.cancel(job)
    return {}


def delete_job(srv, req):
    job = srv.service.job_for(*req.params)
    del srv.state.jobs[job.id], srv.service.requests[job.id]
    return {}


# --- models and their files ----------------------------------------------------------------


def get_model(srv, req):
    job = srv.service.output_model(*req.params)
    asked, trained = srv.service.requests[job.id], srv.service.trained(job)
    return {"name": trained["outputModel"], "displayName": asked.get("displayName") or req.params[1],
            "kind": "HF_PEFT_ADDON", "state": "READY", "status": {"code": "OK", "message": ""},
            "createTime": stamp(job.finished_at), "fineTuningJob": srv.service.job_api(job)["name"],
            "peftDetails": {"baseModel": job.model, "r": trained["loraRank"], "targetModules": []}}


def download_endpoint(srv, req):
    """Signed URLs, one per file of the adapter this stand-in was given."""
    srv.service.output_model(*req.params)
    adapter = srv.service.adapter
    if adapter is None or not Path(adapter).is_dir():
        raise failed(400, "this stand-in holds no adapter to serve: start it with adapter=DIR "
                     "(`ftm standin --provider fireworks --adapter DIR`)")
    urls = {}
    for path in sorted(p for p in Path(adapter).rglob("*") if p.is_file()):
        token = secrets.token_urlsafe(16)
        srv.service.signed[token] = path
        urls[path.relative_to(adapter).as_posix()] = f"{srv.url}/v1/signed/{token}/{path.name}"
    return {"filenameToSignedUrls": urls}


def signed_file(srv, req):
    path = srv.service.signed.get(req.params[0])
    if path is None or not path.is_file():
        raise failed(403, "The signed URL is invalid or has expired")
    return Raw(path=path)


ROUTES = route_table([
    ("POST", "/accounts/{a}/datasets", create_dataset, True),
    ("GET", "/accounts/{a}/datasets", list_datasets, True),
    ("GET", "/accounts/{a}/datasets/{id}", get_dataset, True),
    ("DELETE", "/accounts/{a}/datasets/{id}", delete_dataset, True),
    ("POST", "/accounts/{a}/datasets/{id}:upload", upload_dataset, False),
    ("GET", "/accounts/{a}/datasets/{id}:getDownloadEndpoint", dataset_download_endpoint, True),
    ("POST", "/accounts/{a}/supervisedFineTuningJobs", create_job, True),
    ("GET", "/accounts/{a}/supervisedFineTuningJobs", list_jobs, True),
    ("GET", "/accounts/{a}/supervisedFineTuningJobs/{id}", get_job, True),
    ("DELETE", "/accounts/{a}/supervisedFineTuningJobs/{id}", delete_job, True),
    ("POST", "/accounts/{a}/supervisedFineTuningJobs/{id}:cancel", cancel_job, True),
    *dpo.ROUTES,
    ("GET", "/accounts/{a}/models/{id}", get_model, True),
    ("GET", "/accounts/{a}/models/{id}:getDownloadEndpoint", download_endpoint, True),
    ("GET", "/signed/{id}/{id}", signed_file, True),
], a="([^/]+)", id="([^/:]+)")


class FireworksServer(StandinServer):
    """The front with Fireworks' paths, errors and base URL; signed download URLs need no key."""

    @property
    def url(self) -> str:
        """What FIREWORKS_BASE_URL should be: the SDK adds /v1/accounts/... itself."""
        return super().url[: -len(self.prefix)]

    def authorize(self, headers: dict, path: str) -> None:
        if not path.startswith("/signed/"):
            super().authorize(headers, path)

    def error_body(self, err: ApiError) -> dict:
        return error_body(err)


def standin(host: str = "127.0.0.1", port: int = 0, speed: float = 1.0, *, adapter: Path | None = None,
            **options) -> FireworksServer:
    """A stand-in Fireworks server (not started: use it as a context manager, or call start())."""
    options.setdefault("max_file_bytes", 150 << 20)  # datasets:upload takes up to 150 MB
    return FireworksServer(FireworksClock(speed=speed, adapter=adapter), host, port, routes=ROUTES,
                           prefix="/v1", **options)
