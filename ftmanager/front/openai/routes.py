"""The /v1 endpoints: files, uploads, fine-tuning jobs, models and chat, in the spec's shapes.

Each route is fn(server, request) -> JSON-able dict (or a Raw body). Routes marked unlocked
do their disk work first and take the state lock only to record the result.
"""

from __future__ import annotations

import base64
import logging
import time

from ...facts import TERMINAL
from ..request import Raw
from ..router import route_table
from ..state import ApiError, Job, Upload, new_id
from .completions import completion
from .jobspec import job_from_request

log = logging.getLogger("ftm.api")
PURPOSES = ("assistants", "batch", "fine-tune", "vision", "user_data")
MAX_UPLOAD_BYTES = 8 << 30


# --- files ---------------------------------------------------------------------------------


def create_file(srv, req):
    form = req.form()
    purpose = _field(form, "purpose")
    if purpose not in PURPOSES:
        raise ApiError(400, f"'{purpose}' is not one of {list(PURPOSES)} - 'purpose'", param="purpose")
    part = form.get("file")
    if part is None or part.file is None:
        raise ApiError(400, "Missing the 'file' field of the multipart body.", param="file")
    _check_fine_tune_name(purpose, part.filename or "", "file")
    if part.size > srv.max_file_bytes:
        raise ApiError(400, f"File is too large: {part.size} bytes, over the "
                       f"{srv.max_file_bytes} byte limit. Use the Uploads API.", param="file")
    path = srv.state.save(part.file, "file-")
    with srv.state.lock:
        return srv.state.add_file(part.filename, purpose, path).to_api()


def _field(form: dict, name: str) -> str | None:
    part = form.get(name)
    return part.value if part is not None else None


def _check_fine_tune_name(purpose: str, filename: str, param: str) -> None:
    if purpose == "fine-tune" and not filename.endswith(".jsonl"):
        raise ApiError(400, f"Invalid file format for Fine-Tuning API. Must be .jsonl (got {filename!r}).",
                       param=param)


def list_files(srv, req):
    files = [f for f in reversed(srv.state.files.values())
             if req.arg("purpose") in (None, f.purpose)]
    data = [f.to_api() for f in _after(files, req.arg("after"))][: req.int_arg("limit", 10000)]
    first, last = (data[0]["id"], data[-1]["id"]) if data else ("", "")
    return {"object": "list", "data": data, "first_id": first, "last_id": last, "has_more": False}


def retrieve_file(srv, req):
    return srv.state.file(req.params[0]).to_api()


def delete_file(srv, req):
    srv.state.delete_file(req.params[0])
    return {"id": req.params[0], "object": "file", "deleted": True}


def file_content(srv, req):
    f = srv.state.file(req.params[0])
    if f.base64:
        return Raw(base64.b64encode(f.path.read_bytes()))
    return Raw(path=f.path)


# --- uploads -------------------------------------------------------------------------------


def create_upload(srv, req):
    body = req.json()
    size, filename, purpose = body.get("bytes"), body.get("filename"), body.get("purpose")
    if not isinstance(size, int) or isinstance(size, bool) or not 0 <= size <= MAX_UPLOAD_BYTES:
        raise ApiError(400, f"'bytes' must be an integer from 0 to {MAX_UPLOAD_BYTES}.", param="bytes")
    if not isinstance(filename, str) or not filename:
        raise ApiError(400, "Missing required parameter: 'filename'.", param="filename")
    if purpose not in PURPOSES:
        raise ApiError(400, f"'{purpose}' is not one of {list(PURPOSES)} - 'purpose'", param="purpose")
    _check_fine_tune_name(purpose, filename, "filename")
    srv.state.expire_uploads()
    upload = Upload(new_id("upload_"), filename, purpose, str(body.get("mime_type")), size, int(time.time()),
                    ttl=srv.state.upload_ttl)
    srv.state.uploads[upload.id] = upload
    return upload.to_api()


def _pending(srv, upload_id: str):
    srv.state.expire_uploads()
    upload = srv.state.upload(upload_id)
    if upload.status != "pending":
        raise ApiError(400, f"Upload {upload_id} is {upload.status}; it no longer accepts changes.",
                       param="upload_id")
    return upload


def add_part(srv, req):
    with srv.state.lock:
        _pending(srv, req.params[0])
    part = req.form().get("data")
    if part is None or part.file is None:
        raise ApiError(400, "Missing the 'data' field of the multipart body.", param="data")
    if part.size > srv.max_part_bytes:
        raise ApiError(400, f"A part may hold at most {srv.max_part_bytes} bytes, not {part.size}.",
                       param="data")
    path = srv.state.save(part.file, "part-")
    with srv.state.lock:
        try:
            upload = _pending(srv, req.params[0])  # it may have expired or ended meanwhile
        except ApiError:
            path.unlink(missing_ok=True)
            raise
        part_id = new_id("part_")
        upload.parts[part_id] = path
    return {"id": part_id, "object": "upload.part", "created_at": int(time.time()), "upload_id": upload.id}


def complete_upload(srv, req):
    body = req.json()
    with srv.state.lock:
        upload = _pending(srv, req.params[0])
        ids = _part_ids(upload, body.get("part_ids"))
        upload.status = "completing"  # no second complete (or expiry) while the parts are joined
    try:
        path = srv.state.join([upload.parts[p] for p in ids], "file-")
    except BaseException:
        with srv.state.lock:
            upload.status = "pending"
        raise
    with srv.state.lock:
        upload.file, upload.status = srv.state.add_file(upload.filename, upload.purpose, path), "completed"
        upload.drop_parts()
        return upload.to_api()


def _part_ids(upload, ids) -> list[str]:
    """The part ids of a complete request, each a known part named once, adding up to the size."""
    if not isinstance(ids, list) or not ids or not all(isinstance(p, str) for p in ids):
        raise ApiError(400, "'part_ids' must be a non-empty array of part id strings.", param="part_ids")
    if len(set(ids)) != len(ids):
        raise ApiError(400, "'part_ids' names a part more than once.", param="part_ids")
    missing = [p for p in ids if p not in upload.parts]
    if missing:
        raise ApiError(400, f"Unknown part ids: {missing[:5]}.", param="part_ids")
    total = sum(upload.parts[p].stat().st_size for p in ids)
    if total != upload.bytes:
        raise ApiError(400, f"The parts add up to {total} bytes, but the upload was created "
                       f"for {upload.bytes} bytes.", param="part_ids")
    return ids


def cancel_upload(srv, req):
    upload = _pending(srv, req.params[0])
    upload.status = "cancelled"
    upload.drop_parts()
    return upload.to_api()


# --- fine-tuning jobs ----------------------------------------------------------------------


def create_job(srv, req):
    job = job_from_request(srv, req.json())
    srv.state.jobs[job.id] = job
    srv.service.start(job)
    return job.to_api()


def list_jobs(srv, req):
    wanted = {k[9:-1]: v[0] for k, v in req.query.items() if k.startswith("metadata[") and k.endswith("]")}
    jobs = []
    for job in reversed(srv.state.jobs.values()):
        if all((job.metadata or {}).get(k) == v for k, v in wanted.items()):
            jobs.append(job)
    return _page(srv, jobs, req, 20)


def _page(srv, jobs: list[Job], req, default_limit: int) -> dict:
    page = _listed(jobs, req, default_limit, 100)
    for job in page["data"]:
        _refresh(srv, job)
    return {**page, "data": [j.to_api() for j in page["data"]]}


def _listed(items: list, req, default_limit: int, most: int) -> dict:
    """One page of a newest-first list in OpenAI's shape: the items after `after`, `limit` of them."""
    items = _after(items, req.arg("after"))
    limit = req.int_arg("limit", default_limit, high=most)
    return {"object": "list", "data": items[:limit], "has_more": len(items) > limit}


def _after(items: list, after: str | None) -> list:
    """The items after the one whose id is `after` (cursor paging on a newest-first list)."""
    if not after:
        return items
    ids = [getattr(i, "id", None) or i["id"] for i in items]
    return items[ids.index(after) + 1:] if after in ids else []


def _job(srv, req) -> Job:
    job = srv.state.job(req.params[0])
    _refresh(srv, job)
    return job


def _refresh(srv, job: Job) -> None:
    """Bring a job up to date; a job that cannot be read must not break reading the others."""
    try:
        srv.service.refresh(job)
    except ApiError:
        raise
    except Exception:  # noqa: BLE001 - logged; the job is shown as last known
        log.exception("could not refresh job %s", job.id)


def retrieve_job(srv, req):
    return _job(srv, req).to_api()


def cancel_job(srv, req):
    job = _job(srv, req)
    if job.status in TERMINAL:
        raise ApiError(400, f"Job {job.id} has already {_done(job.status)} and cannot be cancelled.",
                       code="invalid_job_state")
    srv.service.cancel(job)
    return job.to_api()


def _done(status: str) -> str:
    return {"succeeded": "succeeded", "failed": "failed", "cancelled": "been cancelled"}[status]


def pause_job(srv, req):
    return _moved(_job(srv, req), "running", "paused", srv.service.pause)


def resume_job(srv, req):
    return _moved(_job(srv, req), "paused", "resumed", srv.service.resume)


def _moved(job: Job, needs: str, done: str, move) -> dict:
    """move(job) when the job is in the status `needs`, else OpenAI's 400 saying so."""
    if job.status != needs:
        raise ApiError(400, f"Job {job.id} is {job.status}; only a {needs} job can be {done}.",
                       code="invalid_job_state")
    move(job)
    return job.to_api()


def list_events(srv, req):
    return _listed(list(reversed(_job(srv, req).events)), req, 20, 1000)


def list_checkpoints(srv, req):
    page = _listed(list(reversed(_job(srv, req).checkpoints)), req, 10, 100)
    data = page["data"]
    return {**page, "first_id": data[0]["id"] if data else None, "last_id": data[-1]["id"] if data else None}


# --- models and chat -----------------------------------------------------------------------


def list_models(srv, req):
    return {"object": "list", "data": srv.service.models()}


def retrieve_model(srv, req):
    return srv.service.model(req.params[0])


def delete_model(srv, req):
    srv.service.delete_model(req.params[0])
    return {"id": req.params[0], "object": "model", "deleted": True}


def chat(srv, req):
    return completion(srv, req.json(), req.gone)


ROUTES = route_table([
    ("POST", "/files", create_file, False),
    ("GET", "/files", list_files, True),
    ("GET", "/files/{id}", retrieve_file, True),
    ("DELETE", "/files/{id}", delete_file, True),
    ("GET", "/files/{id}/content", file_content, True),
    ("POST", "/uploads", create_upload, True),
    ("POST", "/uploads/{id}/parts", add_part, False),
    ("POST", "/uploads/{id}/complete", complete_upload, False),
    ("POST", "/uploads/{id}/cancel", cancel_upload, True),
    ("POST", "/fine_tuning/jobs", create_job, True),
    ("GET", "/fine_tuning/jobs", list_jobs, True),
    ("GET", "/fine_tuning/jobs/{id}", retrieve_job, True),
    ("POST", "/fine_tuning/jobs/{id}/cancel", cancel_job, True),
    ("POST", "/fine_tuning/jobs/{id}/pause", pause_job, True),
    ("POST", "/fine_tuning/jobs/{id}/resume", resume_job, True),
    ("GET", "/fine_tuning/jobs/{id}/events", list_events, True),
    ("GET", "/fine_tuning/jobs/{id}/checkpoints", list_checkpoints, True),
    ("GET", "/models", list_models, True),
    ("GET", "/models/{id}", retrieve_model, True),
    ("DELETE", "/models/{id}", delete_model, True),
    ("POST", "/chat/completions", chat, False),  # locks only its lookup
])
