"""What an OpenAI-shaped server remembers: files, uploads, jobs, models, in the API's shapes.

Objects are kept as plain records and turned into the spec's JSON shapes by their `to_api`
methods, so the HTTP front never builds a response by hand. One lock guards everything:
the servers are small and correctness under concurrent polling matters more than speed.
"""

from __future__ import annotations

import secrets
import shutil
import string
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

_ALPHABET = string.ascii_letters + string.digits


def new_id(prefix: str, n: int = 24) -> str:
    """An id in OpenAI's style: a prefix and n random letters and digits."""
    return prefix + "".join(secrets.choice(_ALPHABET) for _ in range(n))


class ApiError(Exception):
    """An error response in OpenAI's shape: {"error": {message, type, param, code}}."""

    def __init__(self, status: int, message: str, param=None, code=None, type="invalid_request_error",
                 *, close: bool = False, retry_after: float | None = None):
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.type = status, message, param, code, type
        self.close, self.retry_after = close, retry_after  # close the connection; seconds to wait

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


def not_found(what: str, ident: str, param: str | None = None) -> ApiError:
    """The 404 OpenAI answers for an id it does not know."""
    return ApiError(404, f"No such {what}: '{ident}'", param=param, code=None)


@dataclass
class File:
    """An uploaded file, its bytes on disk."""

    id: str
    filename: str
    purpose: str
    path: Path
    bytes: int
    created_at: int
    base64: bool = False  # serve the content base64-encoded, as OpenAI reportedly does for results

    def to_api(self) -> dict:
        return {"id": self.id, "object": "file", "bytes": self.bytes, "created_at": self.created_at,
                "filename": self.filename, "purpose": self.purpose, "status": "processed",
                "expires_at": self.created_at + 30 * 86400}


@dataclass
class Upload:
    """An Uploads-API upload: parts on disk until completed into a File, or until it expires."""

    id: str
    filename: str
    purpose: str
    mime_type: str
    bytes: int
    created_at: int
    status: str = "pending"
    parts: dict = field(default_factory=dict)  # part id -> Path
    file: File | None = None
    ttl: int = 3600  # seconds a pending upload lives, as OpenAI's do

    def expire(self, now: float) -> bool:
        """Expire a pending upload past its time, deleting its parts; True when it did."""
        if self.status != "pending" or now <= self.created_at + self.ttl:
            return False
        self.status = "expired"
        self.drop_parts()
        return True

    def drop_parts(self) -> None:
        for path in self.parts.values():
            path.unlink(missing_ok=True)
        self.parts.clear()

    def to_api(self) -> dict:
        out = {"id": self.id, "object": "upload", "bytes": self.bytes, "created_at": self.created_at,
               "expires_at": self.created_at + self.ttl, "filename": self.filename,
               "purpose": self.purpose, "status": self.status}
        out["file"] = self.file.to_api() if self.file else None
        return out


@dataclass
class Job:
    """A fine-tuning job; its service moves it along through the methods below."""

    id: str
    model: str
    training_file: str
    training_path: Path
    organization_id: str
    created_at: float
    validation_file: str | None = None
    validation_path: Path | None = None
    suffix: str | None = None
    seed: int = 0
    metadata: dict | None = None
    requested: dict = field(default_factory=dict)  # hyperparameters as asked ("auto" kept)
    resolved: dict | None = None
    status: str = "validating_files"
    error: dict | None = None
    finished_at: float | None = None
    estimated_finish: float | None = None
    fine_tuned_model: str | None = None
    trained_tokens: int | None = None
    result_files: list = field(default_factory=list)
    events: list = field(default_factory=list)  # oldest first
    checkpoints: list = field(default_factory=list)  # oldest first, the last 3 kept
    method: str = "supervised"  # the method type the job reports (history seeded into a stand-in may hold dpo)

    def emit(self, message: str, at: float, *, level="info", type="message", data=None) -> None:
        """Append an event that happened at time `at`."""
        self.events.append({"object": "fine_tuning.job.event", "id": new_id("ftevent-"),
                            "created_at": int(at), "level": level, "message": message,
                            "data": data or {}, "type": type})

    def add_checkpoint(self, step: int, model_id: str, metrics: dict, at: float) -> list[dict]:
        """Record a checkpoint; like OpenAI, keep only the last three. Returns those dropped."""
        self.checkpoints.append({"object": "fine_tuning.job.checkpoint", "id": new_id("ftckpt_"),
                                 "created_at": int(at), "fine_tuned_model_checkpoint": model_id,
                                 "fine_tuning_job_id": self.id, "metrics": {"step": step, **metrics},
                                 "step_number": step})
        dropped = self.checkpoints[:-3]
        del self.checkpoints[:-3]
        return dropped

    def finish(self, status: str, at: float, error: dict | None = None) -> None:
        """Move to a terminal status at time `at`."""
        self.status, self.finished_at, self.estimated_finish = status, at, None
        if error is not None:
            self.error = error

    def hyperparameters(self) -> dict:
        return dict(self.resolved or self.requested)

    def to_api(self) -> dict:
        hp = self.hyperparameters()
        return {
            "object": "fine_tuning.job", "id": self.id, "model": self.model,
            "created_at": int(self.created_at), "status": self.status, "error": self.error,
            "finished_at": _int(self.finished_at), "estimated_finish": _int(self.estimated_finish),
            "fine_tuned_model": self.fine_tuned_model, "hyperparameters": hp,
            "method": {"type": self.method, self.method: {"hyperparameters": hp}},
            "organization_id": self.organization_id, "result_files": list(self.result_files),
            "trained_tokens": self.trained_tokens, "training_file": self.training_file,
            "validation_file": self.validation_file, "seed": self.seed,
            "metadata": self.metadata, "integrations": None,
        }


def _int(value: float | None) -> int | None:
    return None if value is None else int(value)


@dataclass
class Model:
    """A model this server can answer for: a fine-tuned model or one of its checkpoints."""

    id: str
    created: int
    owned_by: str
    job_id: str | None = None  # the job that produced it; None for base models

    def to_api(self) -> dict:
        return {"id": self.id, "object": "model", "created": self.created, "owned_by": self.owned_by}


class State:
    """Everything the server knows, under one lock. Files live on disk under data_dir."""

    def __init__(self, data_dir: Path, organization: str = "org-ftmstandin", upload_ttl: int = 3600):
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        for leftover in [*self.data_dir.glob("part-*"), *self.data_dir.glob("*.tmp")]:
            leftover.unlink(missing_ok=True)  # parts of uploads no restart can complete
        self.organization, self.upload_ttl = organization, upload_ttl
        self.lock = threading.RLock()
        self.files: dict[str, File] = {}
        self.uploads: dict[str, Upload] = {}
        self.jobs: dict[str, Job] = {}  # in creation order
        self.models: dict[str, Model] = {}

    def new_path(self, prefix: str) -> Path:
        return self.data_dir / new_id(prefix, 16)

    def save_text(self, text: str, prefix: str) -> Path:
        """A new file under data_dir holding text (UTF-8)."""
        path = self.new_path(prefix)
        path.write_text(text, encoding="utf-8")
        return path

    def save(self, source, prefix: str) -> Path:
        """Copy a readable binary file into a new file under data_dir (whole, or not at all)."""
        return self.join([source], prefix)

    def join(self, sources: list, prefix: str) -> Path:
        """One new file under data_dir holding each source (a path or an open file) in turn."""
        path = self.new_path(prefix)
        tmp = path.with_name(path.name + ".tmp")
        try:
            with open(tmp, "wb") as out:
                for source in sources:
                    if isinstance(source, Path):
                        with open(source, "rb") as fh:
                            shutil.copyfileobj(fh, out, 1 << 20)
                    else:
                        source.seek(0)
                        shutil.copyfileobj(source, out, 1 << 20)
            tmp.replace(path)
        finally:
            tmp.unlink(missing_ok=True)
        return path

    def expire_uploads(self) -> None:
        """Expire pending uploads past their time (their parts are deleted)."""
        now = time.time()
        for upload in list(self.uploads.values()):
            upload.expire(now)

    def add_file(self, filename: str, purpose: str, path: Path, base64: bool = False) -> File:
        f = File(new_id("file-"), filename, purpose, path, path.stat().st_size, int(time.time()), base64)
        self.files[f.id] = f
        return f

    def file(self, file_id: str, param: str | None = None) -> File:
        """The file with this id, or a 404 (as are upload(), job() and model())."""
        if file_id not in self.files:
            raise not_found("file", file_id, param)
        return self.files[file_id]

    def delete_file(self, file_id: str) -> None:
        f = self.file(file_id)
        del self.files[file_id]
        f.path.unlink(missing_ok=True)

    def upload(self, upload_id: str) -> Upload:
        if upload_id not in self.uploads:
            raise not_found("upload", upload_id)
        return self.uploads[upload_id]

    def job(self, job_id: str) -> Job:
        if job_id not in self.jobs:
            raise ApiError(404, f"Could not find fine-tune: {job_id}", code="fine_tune_not_found")
        return self.jobs[job_id]

    def model(self, model_id: str) -> Model:
        if model_id not in self.models:
            raise ApiError(404, f"The model '{model_id}' does not exist", param="model",
                           code="model_not_found")
        return self.models[model_id]

    def add_model(self, model_id: str, job_id: str | None, owned_by: str | None = None) -> None:
        self.models[model_id] = Model(model_id, int(time.time()), owned_by or self.organization, job_id)
