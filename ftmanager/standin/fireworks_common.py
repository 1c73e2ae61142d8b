"""What the Fireworks stand-in's jobs of either kind share: the gateway's error shape, resource ids,
timestamps, and datasets (created with their exampleCount, uploaded, then READY a moment later).

A dataset holds chat examples ("messages") or preference pairs ("input", "preferred_output",
"non_preferred_output"): Fireworks keeps one kind of dataset for both, and a job checks that the
one it is given holds the kind it trains on (a supervised job chat, a DPO job pairs).
"""

from __future__ import annotations

import json
import re
import secrets
import time
from datetime import datetime, timezone
from pathlib import Path

from ..front.state import ApiError

MIN_EXAMPLES = 3
# What a job trains with where its request says nothing (a dpoJob: in its trainingConfig)
DEFAULTS = {"epochs": 1, "learningRate": 1e-4, "loraRank": 8, "maxContextLength": 8192}
# HTTP status -> the gRPC code and name the gateway sends
GRPC = {400: (3, "INVALID_ARGUMENT"), 401: (16, "UNAUTHENTICATED"), 403: (7, "PERMISSION_DENIED"),
        404: (5, "NOT_FOUND"), 405: (12, "UNIMPLEMENTED"), 408: (4, "DEADLINE_EXCEEDED"),
        409: (6, "ALREADY_EXISTS"), 413: (8, "RESOURCE_EXHAUSTED"), 429: (8, "RESOURCE_EXHAUSTED"),
        500: (13, "INTERNAL"), 503: (14, "UNAVAILABLE")}
RESOURCE_ID = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
CHAT, PREFERENCE = "chat", "preference"
HOLDS = {CHAT: "chat examples (messages)",
         PREFERENCE: "preference pairs (input, preferred_output, non_preferred_output)"}


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


def whole_numbers(asked: dict, names: tuple[str, ...], where: str = "") -> None:
    """The 400 for any of names in asked that is given but is no whole number of at least 1."""
    for name in names:
        value = asked.get(name)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
            raise failed(400, f"{where}{name} must be a whole number of at least 1, not {value!r}")


def checked_rate(asked: dict, where: str = "") -> None:
    if not isinstance(asked["learningRate"], (int, float)) or not asked["learningRate"] > 0:
        raise failed(400, f"{where}learningRate must be above 0, not {asked['learningRate']!r}")


def output_model(account: str, given, job_id: str) -> str:
    """outputModel as a model name of the account (the job's id when none is given), or the 400."""
    model_id = str(given or job_id).rsplit("/", 1)[-1]
    if not RESOURCE_ID.fullmatch(model_id):
        raise failed(400, "outputModel must be 1-63 lowercase letters, digits or hyphens")
    return f"accounts/{account}/models/{model_id}"


def base_of(srv, account: str, asked: dict) -> str:
    """The base model a job trains: its baseModel from the catalogue, or the base of the LoRA addon
    it warm-starts from (the output model of a completed job of the account); else the 400 or 404."""
    warm, base = asked.get("warmStartFrom"), asked.get("baseModel")
    if warm and base:
        raise failed(400, "only one of baseModel and warmStartFrom may be given")
    if warm:
        prefix = f"accounts/{account}/models/"
        if not isinstance(warm, str) or not warm.startswith(prefix):
            raise failed(400, f"warmStartFrom must be a model of the account, {prefix}ID")
        return srv.service.output_model(account, warm[len(prefix):]).model
    if base not in srv.service.base_models():
        raise failed(400, f"base model {base!r} is not available for fine-tuning")
    return base


class Dataset:
    """A dataset of one account: created with its count, then its file, then READY."""

    def __init__(self, account: str, dataset_id: str, example_count: int, display_name: str | None):
        self.account, self.id, self.example_count = account, dataset_id, example_count
        self.display_name, self.created = display_name, time.time()
        self.path: Path | None = None
        self.kind = CHAT  # what its file holds, once uploaded
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
                "userUploaded": {}, "format": "CHAT" if self.kind == CHAT else "FORMAT_UNSPECIFIED"}


def ready_dataset(srv, account: str, name, field: str, kind: str = CHAT) -> Dataset:
    """The READY dataset a job names in field, holding the kind of rows the job trains on; else the 400."""
    prefix = f"accounts/{account}/datasets/"
    if not isinstance(name, str) or not name.startswith(prefix):
        raise failed(400, f"{field} must be a dataset name, {prefix}ID")
    found = srv.service.dataset(account, name[len(prefix):])
    if not found.ready():
        raise failed(400, f"Dataset {found.name} is not READY (it is still UPLOADING)")
    if found.kind != kind:
        job = "a DPO job" if kind == PREFERENCE else "a supervised fine-tuning job"
        raise failed(400, f"Dataset {found.name} holds {HOLDS[found.kind]}, but {job} trains on {HOLDS[kind]}")
    return found


# --- the routes ----------------------------------------------------------------------------


def create_dataset(srv, req):
    body = req.json()
    account, dataset_id = req.params[0], body.get("datasetId")
    if not isinstance(dataset_id, str) or not RESOURCE_ID.fullmatch(dataset_id):
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
    """The file of a dataset still UPLOADING: checked against its count and the rules of the rows
    it holds (chat examples, or preference pairs), then kept."""
    from ..front.openai.file_checks import check_file

    part = req.form().get("file")
    if part is None or part.file is None:
        raise failed(400, "Missing the 'file' field of the multipart body")
    with srv.state.lock:
        srv.service.dataset(*req.params)  # a 404 before the file is copied
    path = srv.state.save(part.file, "dataset-")
    kind = _kind(path)
    report = check_file(path, "file", "Dataset", MIN_EXAMPLES, "dpo" if kind == PREFERENCE else "supervised")
    with srv.state.lock:
        found = srv.service.dataset(*req.params)
        problem = _upload_problem(found, report)
        if problem:
            path.unlink(missing_ok=True)
            raise failed(400, problem)
        found.path, found.tokens, found.kind = path, report.tokens, kind
        found.ready_at = time.time() + srv.service.phases["dataset"] / srv.service.speed
    return {"id": found.id, "object": "file", "bytes": part.size, "created_at": int(found.created),
            "filename": part.filename, "purpose": "fine-tune"}


def _kind(path: Path) -> str:
    """What a dataset's file holds, by its first row: preference pairs carry "input"."""
    with open(path, "rb") as fh:
        for raw in fh:
            if raw.strip():
                try:
                    first = json.loads(raw)
                except ValueError:
                    return CHAT  # the check that follows says what is wrong with the line
                return PREFERENCE if isinstance(first, dict) and "input" in first else CHAT
    return CHAT


def _upload_problem(found: Dataset, report) -> str | None:
    if found.ready():
        return f"Dataset {found.name} is already uploaded"
    if report.error:
        return report.error["message"]
    if report.n_examples != found.example_count:
        return (f"the file holds {report.n_examples} examples but the dataset was created with "
                f"exampleCount {found.example_count}")
    return None


def dataset_download_endpoint(srv, req):
    """A signed URL for the file of an uploaded dataset (the SDK's datasets.get_download_endpoint)."""
    found = srv.service.dataset(*req.params)
    if found.path is None:
        raise failed(400, f"Dataset {found.name} has no uploaded file")
    token = secrets.token_urlsafe(16)
    srv.service.signed[token] = found.path
    return {"filenameToSignedUrls": {f"{found.id}.jsonl": f"{srv.url}/v1/signed/{token}/{found.id}.jsonl"}}


def list_page(req, jobs: list) -> tuple[list, str]:
    """One page of jobs by pageSize and pageToken (an offset, as text), and the next page's token."""
    size = req.int_arg("pageSize", 50, high=200)
    token = str(req.arg("pageToken") or "0")
    start = int(token) if token.isdigit() and len(token) < 10 else 0
    more = start + size < len(jobs)
    return jobs[start:start + size], str(start + size) if more else ""


def job_id_asked(req, field: str, prefix: str) -> str:
    """The job id the client chose (the `field` query argument, checked), else a new one."""
    job_id = req.arg(field) or f"{prefix}-{secrets.token_hex(6)}"
    if not RESOURCE_ID.fullmatch(job_id):
        raise failed(400, f"{field} must be 1-63 lowercase letters, digits or hyphens")
    return job_id


def launched(srv, job, request: dict) -> dict:
    """Keep the job and what was asked for it, start it on the clock; the job as the API shows it."""
    srv.service.requests[job.id] = request
    srv.state.jobs[job.id] = job
    srv.service.start(job)
    return srv.service.job_api(job)
