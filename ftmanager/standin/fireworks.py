"""A stand-in for Fireworks AI's fine-tuning API, on the shared front, with jobs on the clock.

    from ftmanager.standin.fireworks import standin
    with standin(speed=20, adapter=adapter_dir) as srv:   # FIREWORKS_BASE_URL=srv.url
        ...

Account-scoped paths under /v1/accounts/{account}/, camelCase fields, errors in the gateway's
shape ({code, message, details}, code a gRPC number). A dataset is created with its
exampleCount, uploaded (checked against that count and Fireworks' rules), then READY a moment
later; supervisedFineTuningJobs take a client-chosen id (a second create of one id is a 409)
and move JOB_STATE_VALIDATING -> PENDING -> RUNNING -> COMPLETED on the stand-in's clock
(clock.ClockService, whose OpenAI statuses are shown in Fireworks' words). A completed job's
output model is downloadable through `models/{id}:getDownloadEndpoint`: signed URLs (no key,
as a bucket's are) to the files of the adapter a test hands the stand-in.
"""

from __future__ import annotations

import re
import secrets
import time
from datetime import datetime, timezone
from pathlib import Path

from .clock import ClockService
from .standin_server import StandinServer
from ..front.request import Raw
from ..front.router import route_table
from ..front.state import ApiError, Job

# Base models the stand-in fine-tunes (models.toml lists their limits and prices for ftm).
BASE_MODELS = tuple(f"accounts/fireworks/models/{name}" for name in (
    "llama-v3p1-8b-instruct", "llama-v3p1-70b-instruct", "llama-v3p2-1b-instruct",
    "llama-v3p2-3b-instruct", "qwen2p5-7b-instruct", "qwen3-8b"))
MIN_EXAMPLES = 3
DEFAULTS = {"epochs": 1, "learningRate": 1e-4, "loraRank": 8, "maxContextLength": 8192}
STATES = {"validating_files": "JOB_STATE_VALIDATING", "queued": "JOB_STATE_PENDING",
          "running": "JOB_STATE_RUNNING", "succeeded": "JOB_STATE_COMPLETED",
          "failed": "JOB_STATE_FAILED", "cancelled": "JOB_STATE_CANCELLED"}
# HTTP status -> the gRPC code and name the gateway sends
GRPC = {400: (3, "INVALID_ARGUMENT"), 401: (16, "UNAUTHENTICATED"), 403: (7, "PERMISSION_DENIED"),
        404: (5, "NOT_FOUND"), 405: (12, "UNIMPLEMENTED"), 408: (4, "DEADLINE_EXCEEDED"),
        409: (6, "ALREADY_EXISTS"), 413: (8, "RESOURCE_EXHAUSTED"), 429: (8, "RESOURCE_EXHAUSTED"),
        500: (13, "INTERNAL"), 503: (14, "UNAVAILABLE")}
_RESOURCE_ID = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
JOB_FIELDS = {"dataset", "baseModel", "warmStartFrom", "outputModel", "displayName", "epochs",
              "learningRate", "loraRank", "batchSize", "batchSizeSamples", "maxContextLength",
              "evaluationDataset", "earlyStop", "jinjaTemplate", "evalAutoCarveout", "isTurbo",
              "gradientAccumulationSteps", "learningRateWarmupSteps", "optimizerWeightDecay",
              "nodes", "region", "wandbConfig", "mtpEnabled", "mtpNumDraftTokens", "mtpFreezeBaseModel"}


def stamp(ts: float | None) -> str | None:
    """Seconds since the epoch as the RFC 3339 text Fireworks answers with."""
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def error_body(err: ApiError) -> dict:
    """An error as Fireworks' gateway sends it."""
    code, _name = GRPC.get(err.status, (2, "UNKNOWN"))
    return {"code": code, "message": err.message, "details": []}


def failed(status: int, message: str) -> ApiError:
    return ApiError(status, message, code=GRPC.get(status, (2, "UNKNOWN"))[1])


class Dataset:
    """A dataset of one account: created with its count, then its file, then READY."""

    def __init__(self, account: str, dataset_id: str, example_count: int, display_name: str | None):
        self.account, self.id, self.example_count = account, dataset_id, example_count
        self.display_name, self.created = display_name, time.time()
        self.path: Path | None = None
        self.tokens = 0
        self.ready_at: float | None = None  # READY from this moment on (after an upload)

    @property
    def name(self) -> str:
        return f"accounts/{self.account}/datasets/{self.id}"

    def ready(self) -> bool:
        return self.ready_at is not None and time.time() >= self.ready_at

    def to_api(self) -> dict:
        return {"name": self.name, "displayName": self.display_name or self.id, "createTime": stamp(self.created),
                "state": "READY" if self.ready() else "UPLOADING", "status": {"code": "OK", "message": ""},
                "exampleCount": str(self.example_count), "estimatedTokenCount": str(self.tokens),
                "userUploaded": {}, "format": "CHAT"}


class FireworksClock(ClockService):
    """The clock service, holding what Fireworks adds: datasets, each job's request, adapters."""

    min_examples = MIN_EXAMPLES

    def __init__(self, speed: float = 1.0, adapter: Path | None = None, phases: dict | None = None):
        super().__init__(speed=speed, results_base64="never", phases={"dataset": 1.0, **(phases or {})})
        self.datasets: dict[tuple[str, str], Dataset] = {}
        self.requests: dict[str, dict] = {}  # job id -> {"account", the create body with defaults}
        self.adapter = adapter  # the files every completed job's model downloads as
        self.signed: dict[str, Path] = {}  # token -> the file a signed URL gives

    def base_models(self) -> tuple[str, ...]:
        return BASE_MODELS

    def dataset(self, account: str, dataset_id: str) -> Dataset:
        found = self.datasets.get((account, dataset_id))
        if found is None:
            raise failed(404, f"Dataset accounts/{account}/datasets/{dataset_id} not found")
        return found

    def job_for(self, account: str, job_id: str) -> Job:
        job = self.state.jobs.get(job_id)
        if job is None or self.requests[job_id]["account"] != account:
            raise failed(404, f"SupervisedFineTuningJob accounts/{account}/supervisedFineTuningJobs/{job_id} not found")
        self.refresh(job)
        return job

    def job_api(self, job: Job) -> dict:
        """The job in Fireworks' shape: its request, its state in Fireworks' words, its progress."""
        asked, sim = self.requests[job.id], self._sims.get(job.id)
        body = {k: v for k, v in asked.items() if k != "account"}
        out = {**body, "name": f"accounts/{asked['account']}/supervisedFineTuningJobs/{job.id}",
               "state": STATES.get(job.status, job.status), "createTime": stamp(job.created_at),
               "updateTime": stamp(_updated(job)), "completedTime": stamp(job.finished_at),
               "createdBy": "standin@ftm.invalid", "status": _status(job)}
        if sim and sim.total_steps:
            done = sim.step / sim.total_steps
            epoch = min(sim.step // sim.steps_per_epoch, sim.total_steps // sim.steps_per_epoch - 1)
            out["jobProgress"] = {"percent": int(100 * done), "epoch": epoch,  # counted from 0
                                  "inputTokens": int(sim.tokens * sim.step / sim.steps_per_epoch)}
        return out

    def output_model(self, account: str, model_id: str) -> Job:
        """The completed job whose output model this is, or the 404."""
        name = f"accounts/{account}/models/{model_id}"
        for job_id, asked in self.requests.items():
            job = self.state.jobs[job_id]
            self.refresh(job)
            if asked["outputModel"] == name and job.status == "succeeded":
                return job
        raise failed(404, f"Model {name} not found")


def _updated(job: Job) -> float:
    return job.events[-1]["created_at"] if job.events else job.created_at


def _status(job: Job) -> dict:
    if job.status == "failed":
        return {"code": "INVALID_ARGUMENT", "message": (job.error or {}).get("message", "")}
    if job.status == "cancelled":
        return {"code": "CANCELLED", "message": "Job was cancelled"}
    return {"code": "OK", "message": ""}


# --- datasets ------------------------------------------------------------------------------


def create_dataset(srv, req):
    body = req.json()
    account, dataset_id = req.params[0], body.get("datasetId")
    if not isinstance(dataset_id, str) or not _RESOURCE_ID.fullmatch(dataset_id):
        raise failed(400, "datasetId must be 1-63 lowercase letters, digits or hyphens")
    fields = body.get("dataset") if isinstance(body.get("dataset"), dict) else {}
    count = _count(fields.get("exampleCount"))
    if (account, dataset_id) in srv.service.datasets:
        raise failed(409, f"Dataset accounts/{account}/datasets/{dataset_id} already exists")
    made = Dataset(account, dataset_id, count, fields.get("displayName"))
    srv.service.datasets[(account, dataset_id)] = made
    return made.to_api()


def _count(value) -> int:
    try:
        count = int(value)
    except (TypeError, ValueError):
        count = 0
    if count < 1:
        raise failed(400, "dataset.exampleCount is required: the number of examples the file holds")
    return count


def get_dataset(srv, req):
    return srv.service.dataset(*req.params).to_api()


def list_datasets(srv, req):
    mine = [d.to_api() for (account, _), d in srv.service.datasets.items() if account == req.params[0]]
    return {"datasets": mine, "nextPageToken": "", "totalSize": len(mine)}


def delete_dataset(srv, req):
    srv.service.dataset(*req.params)
    del srv.service.datasets[tuple(req.params)]
    return {}


def upload_dataset(srv, req):
    """The file of a dataset still UPLOADING: checked against its count and the rules, then kept."""
    from .file_checks import check_file

    part = req.form().get("file")
    if part is None or part.file is None:
        raise failed(400, "Missing the 'file' field of the multipart body")
    with srv.state.lock:
        srv.service.dataset(*req.params)  # a 404 before the file is copied
    path = srv.state.save(part.file, "dataset-")
    report = check_file(path, "file", "Dataset", MIN_EXAMPLES)
    with srv.state.lock:
        found = srv.service.dataset(*req.params)
        problem = _upload_problem(found, report)
        if problem:
            path.unlink(missing_ok=True)
            raise failed(400, problem)
        found.path, found.tokens = path, report.tokens
        found.ready_at = time.time() + srv.service.phases["dataset"] / srv.service.speed
    return {"id": found.id, "object": "file", "bytes": part.size, "created_at": int(found.created),
            "filename": part.filename, "purpose": "fine-tune"}


def _upload_problem(found: Dataset, report) -> str | None:
    if found.ready():
        return f"Dataset {found.name} is already uploaded"
    if report.error:
        return report.error["message"]
    if report.n_examples != found.example_count:
        return (f"the file holds {report.n_examples} examples but the dataset was created with "
                f"exampleCount {found.example_count}")
    return None


# --- supervised fine-tuning jobs -------------------------------------------------------------


def create_job(srv, req):
    body, account = req.json(), req.params[0]
    job_id = req.arg("supervisedFineTuningJobId") or f"sftj-{secrets.token_hex(6)}"
    if not _RESOURCE_ID.fullmatch(job_id):
        raise failed(400, "supervisedFineTuningJobId must be 1-63 lowercase letters, digits or hyphens")
    if job_id in srv.state.jobs:
        raise failed(409, f"SupervisedFineTuningJob accounts/{account}/supervisedFineTuningJobs/{job_id} already exists")
    asked = _checked_request(srv, account, job_id, body)
    train = _ready_dataset(srv, account, asked["dataset"], "dataset")
    valid = _ready_dataset(srv, account, asked["evaluationDataset"], "evaluationDataset") if asked.get("evaluationDataset") else None
    job = Job(id=job_id, model=asked["baseModel"], training_file=train.name, training_path=train.path,
              validation_file=valid.name if valid else None, validation_path=valid.path if valid else None,
              organization_id=account, created_at=time.time(),
              requested={"n_epochs": asked["epochs"], "batch_size": asked.get("batchSizeSamples", "auto"),
                         "learning_rate_multiplier": "auto"})
    srv.service.requests[job_id] = {"account": account, **asked}
    srv.state.jobs[job_id] = job
    srv.service.start(job)
    return srv.service.job_api(job)


def _checked_request(srv, account: str, job_id: str, body: dict) -> dict:
    """The create body with Fireworks' defaults filled in, or the 400 naming what is wrong."""
    unknown = sorted(set(body) - JOB_FIELDS)
    if unknown:
        raise failed(400, f"unknown field {unknown[0]!r} in SupervisedFineTuningJob")
    if body.get("baseModel") not in srv.service.base_models():
        raise failed(400, f"base model {body.get('baseModel')!r} is not available for fine-tuning")
    asked = {**DEFAULTS, **body}
    for name, low in (("epochs", 1), ("loraRank", 1), ("batchSizeSamples", 1), ("maxContextLength", 1)):
        value = asked.get(name)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < low):
            raise failed(400, f"{name} must be a whole number of at least {low}, not {value!r}")
    if not isinstance(asked["learningRate"], (int, float)) or not asked["learningRate"] > 0:
        raise failed(400, f"learningRate must be above 0, not {asked['learningRate']!r}")
    model_id = str(asked.get("outputModel") or job_id).rsplit("/", 1)[-1]
    if not _RESOURCE_ID.fullmatch(model_id):
        raise failed(400, "outputModel must be 1-63 lowercase letters, digits or hyphens")
    asked["outputModel"] = f"accounts/{account}/models/{model_id}"
    return asked


def _ready_dataset(srv, account: str, name, field: str) -> Dataset:
    prefix = f"accounts/{account}/datasets/"
    if not isinstance(name, str) or not name.startswith(prefix):
        raise failed(400, f"{field} must be a dataset name, {prefix}ID")
    found = srv.service.dataset(account, name[len(prefix):])
    if not found.ready():
        raise failed(400, f"Dataset {found.name} is not READY (it is still UPLOADING)")
    return found


def get_job(srv, req):
    return srv.service.job_api(srv.service.job_for(*req.params))


def list_jobs(srv, req):
    account = req.params[0]
    jobs = [j for j in srv.state.jobs.values() if srv.service.requests[j.id]["account"] == account]
    size = req.int_arg("pageSize", 50, high=200)
    token = str(req.arg("pageToken") or "0")
    start = int(token) if token.isdigit() and len(token) < 10 else 0
    page = jobs[start:start + size]
    for job in page:
        srv.service.refresh(job)
    more = start + size < len(jobs)
    return {"supervisedFineTuningJobs": [srv.service.job_api(j) for j in page],
            "nextPageToken": str(start + size) if more else "", "totalSize": len(jobs)}


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
    asked = srv.service.requests[job.id]
    return {"name": asked["outputModel"], "displayName": asked.get("displayName") or req.params[1],
            "kind": "HF_PEFT_ADDON", "state": "READY", "status": {"code": "OK", "message": ""},
            "createTime": stamp(job.finished_at), "fineTuningJob": srv.service.job_api(job)["name"],
            "peftDetails": {"baseModel": job.model, "r": asked["loraRank"], "targetModules": []}}


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
    ("POST", "/accounts/{a}/supervisedFineTuningJobs", create_job, True),
    ("GET", "/accounts/{a}/supervisedFineTuningJobs", list_jobs, True),
    ("GET", "/accounts/{a}/supervisedFineTuningJobs/{id}", get_job, True),
    ("DELETE", "/accounts/{a}/supervisedFineTuningJobs/{id}", delete_job, True),
    ("POST", "/accounts/{a}/supervisedFineTuningJobs/{id}:cancel", cancel_job, True),
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
