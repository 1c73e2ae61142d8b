"""Together's /v1 endpoints, in the shapes of its published spec and of its official SDK.

Files go up the SDK's way (POST /files with the form fields -> 302 to a signed PUT URL ->
POST /files/{id}/preprocess) or the spec's (multipart POST /files/upload). Jobs are created
at POST /fine-tunes after the SDK asks for the model's limits and a price estimate. A completed
job's weights come from GET /finetune/download as a .tar.zst archive (Range requests honoured).
"""

from __future__ import annotations

import hmac
import secrets
import time
import uuid

from ...front.request import Raw
from ...front.router import route_table
from ...front.state import ApiError
from .clock import OWNER, TERMINAL, stamp

PURPOSES = ("fine-tune", "eval", "eval-sample", "eval-output", "eval-summary", "batch-generated", "batch-api")
FILE_TYPES = ("jsonl", "parquet", "csv")
LIMITS = {"max_rank": 64, "default_rank": 64, "min_batch": 8, "max_batch": 32, "max_epochs": 20}
MODELS = ("meta-llama/Meta-Llama-3.1-8B-Instruct-Reference", "meta-llama/Meta-Llama-3.1-70B-Instruct-Reference",
          "meta-llama/Llama-3.2-3B-Instruct", "Qwen/Qwen2.5-7B-Instruct", "Qwen/Qwen3-8B")


# --- files ---------------------------------------------------------------------------------


def _file_api(f) -> dict:
    processed = f.get("processed", False)
    return {"id": f["id"], "object": "file", "created_at": f["created_at"], "filename": f["filename"],
            "bytes": f["bytes"], "purpose": f["purpose"], "FileType": f["file_type"], "Processed": processed,
            "processing_status": "COMPLETED" if processed else "PENDING"}


def _form_value(form: dict, name: str, allowed: tuple, default=None) -> str:
    part = form.get(name)
    value = part.value if part is not None else default
    if value not in allowed:
        raise ApiError(400, f"'{name}' must be one of {list(allowed)}, not {value!r}.", param=name)
    return value


def _new_file(srv, form: dict) -> dict:
    name = form.get("file_name")
    if name is None or not name.value:
        raise ApiError(400, "Missing required field 'file_name'.", param="file_name")
    record = {"id": f"file-{uuid.uuid4()}", "filename": name.value, "created_at": int(time.time()),
              "purpose": _form_value(form, "purpose", PURPOSES),
              "file_type": _form_value(form, "file_type", FILE_TYPES, "jsonl"), "bytes": 0, "path": None}
    return record


def start_upload(srv, req):
    """The SDK's first step: the form fields, answered by a redirect to a signed PUT URL."""
    record = _new_file(srv, req.form())
    record["signature"] = secrets.token_urlsafe(16)
    srv.files[record["id"]] = record
    url = f"{srv.url}/files/{record['id']}/put?signature={record['signature']}"
    return Raw(b"", status=302, headers={"Location": url, "X-Together-File-Id": record["id"]})


def put_upload(srv, req):
    """The signed PUT (no key: the signature is the authority, as with a bucket's URL)."""
    record = srv.files.get(req.params[0])
    if record is None or not hmac.compare_digest(str(req.arg("signature", "")), record.get("signature", "")):
        raise ApiError(403, "The upload URL's signature does not match.", code="forbidden")
    path = srv.state.new_path("file-")
    path.write_bytes(req.body or b"")
    with srv.state.lock:
        record.update(path=path, bytes=path.stat().st_size)
    return Raw(b"")


def preprocess(srv, req):
    record = _file(srv, req.params[0])
    if record["path"] is None:
        raise ApiError(400, f"File {record['id']} has no content yet: PUT it to its upload URL first.")
    record["processed"] = True
    return _file_api(record)


def upload(srv, req):
    """The spec's one-call multipart upload."""
    form = req.form()
    part = form.get("file")
    if part is None or part.file is None:
        raise ApiError(400, "Missing the 'file' field of the multipart body.", param="file")
    record = _new_file(srv, form)
    record.update(path=srv.state.save(part.file, "file-"), bytes=part.size, processed=True)
    with srv.state.lock:
        srv.files[record["id"]] = record
    return _file_api(record)


def _file(srv, file_id: str) -> dict:
    record = srv.files.get(file_id)
    if record is None:
        raise ApiError(404, f"File {file_id} not found.", code="not_found")
    return record


def list_files(srv, req):
    return {"data": [_file_api(f) for f in srv.files.values() if f["path"] is not None]}


def retrieve_file(srv, req):
    return _file_api(_file(srv, req.params[0]))


def delete_file(srv, req):
    record = srv.files.pop(_file(srv, req.params[0])["id"])
    if record["path"] is not None:
        record["path"].unlink(missing_ok=True)
    return {"id": record["id"], "deleted": True}


def file_content(srv, req):
    record = _file(srv, req.params[0])
    return Raw(path=record["path"], content_type="text/plain") if record["path"] else Raw(b"")


# --- models and prices ---------------------------------------------------------------------


def _known_model(model) -> str:
    if model not in MODELS:
        raise ApiError(404, f"Model {model} is not available for fine-tuning.", param="model",
                       code="model_not_available")
    return model


def model_limits(srv, req):
    name = _known_model(req.arg("model_name"))
    lora = {"default_rank": LIMITS["default_rank"], "max_rank": LIMITS["max_rank"],
            "min_batch_size": LIMITS["min_batch"], "max_batch_size": LIMITS["max_batch"],
            "max_batch_size_dpo": LIMITS["max_batch"] // 2,
            "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]}
    full = {"min_batch_size": LIMITS["min_batch"], "max_batch_size": LIMITS["max_batch"] // 2,
            "max_batch_size_dpo": LIMITS["max_batch"] // 4}
    return {"model_name": name, "max_num_epochs": LIMITS["max_epochs"], "max_num_evals": 100,
            "max_num_checkpoints": 20, "max_learning_rate": 1.0, "min_learning_rate": 1e-8,
            "max_seq_length_sft": 8192, "max_seq_length_dpo": 8192, "min_max_seq_length": 512,
            "default_gradient_accumulation_steps": 1, "merge_output_lora": True,
            "supports_full_training": True, "supports_vision": False, "supports_tools": True,
            "supports_reasoning": False, "lora_training": lora, "full_training": full}


def supported_models(srv, req):
    return {"models": list(MODELS)}


def _training_file(srv, body: dict) -> dict:
    """The job's training file record; a 400 naming training_file when none is given, as Together answers."""
    file_id = body.get("training_file")
    if not isinstance(file_id, str) or not file_id:
        raise ApiError(400, "training_file is required: the id of an uploaded file (see files.upload).",
                       param="training_file", code="invalid_request")
    return _file(srv, file_id)


def estimate_price(srv, req):
    body = req.json()
    record = _training_file(srv, body)
    tokens = max(1, record["bytes"] // 4) * int(body.get("n_epochs") or 1)
    return {"estimation_available": True, "allowed_to_proceed": True, "estimated_train_token_count": tokens,
            "estimated_eval_token_count": 0, "estimated_total_price": round(tokens * 0.48e-6, 6),
            "user_limit": 1000.0}


# --- fine-tunes ------------------------------------------------------------------------------


def create(srv, req):
    body = req.json()
    training = _training_file(srv, body)
    validation = _file(srv, str(body["validation_file"])) if body.get("validation_file") else None
    _known_model(body.get("model"))
    request = _resolved(body)
    job = srv.service.new_job(request, training["path"], validation["path"] if validation else None)
    job.asked = body
    srv.state.jobs[job.id] = job
    return truncated(job)


def _resolved(body: dict) -> dict:
    """The create body with Together's defaults filled in; a 400 for what it refuses."""
    kind = body.get("training_type") or {"type": "Lora"}
    if not isinstance(kind, dict) or kind.get("type") not in ("Lora", "Full"):
        raise ApiError(400, "training_type.type must be 'Lora' or 'Full'.", param="training_type")
    if kind["type"] == "Lora":
        rank = kind.get("lora_r", LIMITS["default_rank"])
        if not isinstance(rank, int) or not 1 <= rank <= LIMITS["max_rank"]:
            raise ApiError(400, f"lora_r must be between 1 and {LIMITS['max_rank']}.", param="lora_r")
        kind = {"type": "Lora", "lora_r": rank, "lora_alpha": kind.get("lora_alpha", 2 * rank),
                "lora_dropout": kind.get("lora_dropout", 0.0),
                "lora_trainable_modules": kind.get("lora_trainable_modules", "all-linear")}
    batch = body.get("batch_size", "max")
    batch = LIMITS["max_batch"] if batch == "max" else batch
    epochs = body.get("n_epochs", 1)
    if not isinstance(batch, int) or not LIMITS["min_batch"] <= batch <= LIMITS["max_batch"]:
        raise ApiError(400, f"batch_size must be between {LIMITS['min_batch']} and {LIMITS['max_batch']}.",
                       param="batch_size")
    if not isinstance(epochs, int) or not 1 <= epochs <= LIMITS["max_epochs"]:
        raise ApiError(400, f"n_epochs must be between 1 and {LIMITS['max_epochs']}.", param="n_epochs")
    method = _training_method(body.get("training_method") or {"method": "sft", "train_on_inputs": "auto"})
    return {**body, "training_type": kind, "batch_size": batch, "n_epochs": epochs, "training_method": method,
            "learning_rate": float(body.get("learning_rate", 1e-5)), "n_checkpoints": body.get("n_checkpoints", 1),
            "n_evals": body.get("n_evals", 0), "warmup_ratio": body.get("warmup_ratio", 0.0)}


# Together's training methods and the settings each takes (its SDK's TrainingMethodSft / Dpo).
TRAINING_METHODS = {"sft": {"train_on_inputs"},
                    "dpo": {"dpo_beta", "dpo_normalize_logratios_by_length", "dpo_reference_free", "rpo_alpha", "simpo_gamma"}}


def _training_method(method) -> dict:
    """training_method as Together checks it: a known method, its own settings, numbers in range."""
    kind = method.get("method") if isinstance(method, dict) else None
    if kind not in TRAINING_METHODS:
        raise ApiError(400, f"training_method.method must be one of {', '.join(TRAINING_METHODS)}.",
                       param="training_method")
    extra = set(method) - TRAINING_METHODS[kind] - {"method"}
    if extra:
        raise ApiError(400, f"training_method {kind} takes no {', '.join(sorted(extra))}.", param="training_method")
    for name in ("dpo_beta", "rpo_alpha", "simpo_gamma"):
        value = method.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                  or not value >= 0 or (name == "dpo_beta" and value == 0)):
            raise ApiError(400, f"training_method.{name} must be a {'positive' if name == 'dpo_beta' else 'non-negative'} number.",
                           param=f"training_method.{name}")
    return dict(method)


def _job(srv, req):
    job = srv.state.jobs.get(req.params[0])
    if job is None:
        raise ApiError(404, f"Fine-tune job {req.params[0]} not found.", code="not_found")
    srv.service.refresh(job)
    return job


def truncated(job) -> dict:
    """The short form (create, list, cancel answer with it)."""
    hp = job.request
    out = {"id": job.id, "status": job.status, "created_at": stamp(job.created_at),
            "updated_at": stamp(job.updated_at or job.created_at), "model": hp["model"],
            "model_output_name": job.output_name, "training_file": hp["training_file"],
            "validation_file": hp.get("validation_file") or "", "n_epochs": hp["n_epochs"],
            "batch_size": hp["batch_size"], "learning_rate": hp["learning_rate"],
            "n_checkpoints": hp["n_checkpoints"], "n_evals": hp["n_evals"], "warmup_ratio": hp["warmup_ratio"],
            "suffix": hp.get("suffix") or "", "random_seed": hp.get("random_seed"),
            "training_type": hp["training_type"], "training_method": hp["training_method"],
            "token_count": job.token_count or 0, "total_price": 0, "user_id": job.user_id,
            "owner_address": f"{OWNER}@standin.invalid", "events": []}
    return {k: v for k, v in out.items() if v is not None}


def full(job) -> dict:
    out = {k: v for k, v in truncated(job).items() if k not in ("suffix", "random_seed", "owner_address",
                                                              "user_id", "n_checkpoints", "n_evals")}
    out.update(job_id=job.id, epochs_completed=job.epochs_completed, events=list(job.events),
               n_checkpoints=job.request["n_checkpoints"], n_evals=job.request["n_evals"],
               trainingfile_numlines=job.n_examples, trainingfile_size=job.training_path.stat().st_size,
               train_on_inputs=job.request["training_method"].get("train_on_inputs", "auto"),
               model_output_path=f"s3://ftm-standin/{job.id}/final")
    if job.started_at:
        out["started_at"] = stamp(job.started_at)
    out["user_id"] = job.user_id
    return out


def list_jobs(srv, req):
    jobs = list(srv.state.jobs.values())
    for job in jobs:
        srv.service.refresh(job)
    return {"data": [truncated(j) for j in reversed(jobs)]}


def retrieve(srv, req):
    return full(_job(srv, req))


def cancel(srv, req):
    job = _job(srv, req)
    if job.status in TERMINAL or job.status == "cancel_requested":
        raise ApiError(400, f"Fine-tune job {job.id} is {job.status} and cannot be cancelled.")
    srv.service.cancel(job)
    return truncated(job)


def delete(srv, req):
    job = _job(srv, req)
    del srv.state.jobs[job.id]
    return {"message": f"Fine-tune job {job.id} deleted."}


def events(srv, req):
    return {"data": list(_job(srv, req).events)}


def checkpoints(srv, req):
    return {"data": list(reversed(_job(srv, req).checkpoints))}


def metrics(srv, req):
    low = req.int_arg("global_step_from", 0, low=0, high=999_999_999)
    high = req.int_arg("global_step_to", 999_999_999, low=0, high=999_999_999)
    return {"metrics": [m for m in _job(srv, req).metrics if low <= m["train/global_step"] <= high]}


def download(srv, req):
    job = srv.state.jobs.get(str(req.arg("ft_id")))
    if job is None:
        raise ApiError(404, f"Fine-tune job {req.arg('ft_id')} not found.", code="not_found")
    srv.service.refresh(job)
    if job.status != "completed":
        raise ApiError(400, f"Fine-tune job {job.id} is {job.status}: only completed jobs can be downloaded.")
    kind = req.arg("checkpoint") or "merged"
    if kind not in ("merged", "adapter", "model_output_path"):
        raise ApiError(400, "checkpoint must be merged, adapter or model_output_path.", param="checkpoint")
    if kind == "adapter" and job.request["training_type"]["type"] == "Full":
        raise ApiError(400, f"Fine-tune job {job.id} trained all weights: it has no adapter.", param="checkpoint")
    return Raw(path=srv.archive("adapter" if kind == "adapter" else "merged"))


ROUTES = route_table([
    ("POST", "/files", start_upload, True),
    ("PUT", "/files/{id}/put", put_upload, False),
    ("POST", "/files/{id}/preprocess", preprocess, True),
    ("POST", "/files/upload", upload, False),
    ("GET", "/files", list_files, True),
    ("GET", "/files/{id}", retrieve_file, True),
    ("DELETE", "/files/{id}", delete_file, True),
    ("GET", "/files/{id}/content", file_content, True),
    ("GET", "/fine-tunes/models/limits", model_limits, True),
    ("GET", "/fine-tunes/models/supported", supported_models, True),
    ("POST", "/fine-tunes/estimate-price", estimate_price, True),
    ("POST", "/fine-tunes", create, True),
    ("GET", "/fine-tunes", list_jobs, True),
    ("GET", "/fine-tunes/{id}", retrieve, True),
    ("DELETE", "/fine-tunes/{id}", delete, True),
    ("POST", "/fine-tunes/{id}/cancel", cancel, True),
    ("GET", "/fine-tunes/{id}/events", events, True),
    ("GET", "/fine-tunes/{id}/checkpoints", checkpoints, True),
    ("GET", "/fine-tunes/{id}/metrics", metrics, True),
    ("GET", "/finetune/download", download, False),  # packs the archive, once, under its own lock
])
