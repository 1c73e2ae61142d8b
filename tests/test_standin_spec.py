"""Every endpoint of the stand-in, driven over real HTTP, answers in the shapes of OpenAI's spec.

Each JSON response is validated with jsonschema's Draft4Validator against the schema that
openai-openapi-subset.json gives for that path and status (kept in tests/specs/, MIT). Two
documented departures are checked to be the only differences: the `paused` status (the
spec's enum omits it) and the empty error object OpenAI sends on some healthy jobs.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import httpx
import jsonschema
import pytest

from ftmanager.standin import standin

SPEC_PATH = Path(__file__).resolve().parent / "specs" / "openai-openapi-subset.json"  # MIT: see specs/LICENSES.md
MODEL = "gpt-4o-mini-2024-07-18"


@pytest.fixture(scope="module")
def spec() -> dict:
    return json.loads(SPEC_PATH.read_text())


@pytest.fixture(scope="module")
def server():
    with standin(speed=40, results_base64="never") as srv:
        yield srv


@pytest.fixture
def api(server, spec):
    return Checked(server, spec)


class Checked:
    """An HTTP client that validates every JSON answer against the spec's schema for it."""

    def __init__(self, server, spec):
        self.server, self.spec = server, spec
        self.http = httpx.Client(base_url=server.url, headers={"Authorization": "Bearer sk-test"}, timeout=10)
        self.checked: set[tuple[str, str, int]] = set()

    def call(self, method: str, template: str, status: int = 200, *, allow=(), **kwargs):
        ids = kwargs.pop("ids", {})
        path = re.sub(r"\{\w+\}", lambda _: ids["id"], template) if ids else template
        response = self.http.request(method, path, **kwargs)
        assert response.status_code == status, response.text
        if template.endswith("/content"):
            return response
        schema = self.schema(method, template, status)
        errors = [e for e in jsonschema.Draft4Validator(schema).iter_errors(response.json())
                  if not any(a(e) for a in allow)]
        assert not errors, f"{method} {path}: " + "; ".join(f"{list(e.path)}: {e.message}" for e in errors[:5])
        self.checked.add((method, template, status))
        return response.json()

    def schema(self, method: str, template: str, status: int) -> dict:
        if status != 200:
            inner = {"$ref": "#/components/schemas/ErrorResponse"}
        else:
            op = self.spec["paths"][template][method.lower()]
            inner = op["responses"]["200"]["content"]["application/json"]["schema"]
        return {**inner, "components": self.spec["components"]}


def chat_jsonl(n: int) -> bytes:
    rows = [{"messages": [{"role": "user", "content": f"Capital of country {i}?"},
                          {"role": "assistant", "content": json.dumps({"capital": f"City {i}"})}]}
            for i in range(n)]
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


def upload(api, data: bytes, name: str = "train.jsonl") -> str:
    files = {"file": (name, data, "application/jsonl")}
    return api.call("POST", "/files", files=files, data={"purpose": "fine-tune"})["id"]


def wait_for(api, job_id: str, statuses: set[str], allow=()) -> dict:
    deadline = time.time() + 20
    while time.time() < deadline:
        job = api.call("GET", "/fine_tuning/jobs/{fine_tuning_job_id}", ids={"id": job_id}, allow=allow)
        if job["status"] in statuses:
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} never reached {statuses}: {job['status']}")


def paused_enum(error) -> bool:
    """The spec's status enum omits `paused`, which the API does send."""
    return list(error.path)[-1:] == ["status"] and error.instance == "paused"


def test_files_endpoints_conform(api):
    file_id = upload(api, chat_jsonl(12))
    api.call("GET", "/files")
    api.call("GET", "/files", params={"purpose": "fine-tune"})
    assert api.call("GET", "/files/{file_id}", ids={"id": file_id})["bytes"] == len(chat_jsonl(12))
    assert api.call("GET", "/files/{file_id}/content", ids={"id": file_id}).content == chat_jsonl(12)
    assert api.call("DELETE", "/files/{file_id}", ids={"id": file_id})["deleted"] is True
    api.call("GET", "/files/{file_id}", 404, ids={"id": file_id})
    api.call("POST", "/files", 400, files={"file": ("notes.txt", b"x")}, data={"purpose": "fine-tune"})


def test_uploads_endpoints_conform(api):
    data = chat_jsonl(12)
    body = {"bytes": len(data), "filename": "big.jsonl", "mime_type": "text/jsonl", "purpose": "fine-tune"}
    up = api.call("POST", "/uploads", json=body)
    parts = [api.call("POST", "/uploads/{upload_id}/parts", ids={"id": up["id"]}, files={"data": ("blob", chunk)})["id"]
             for chunk in (data[:1000], data[1000:])]
    api.call("POST", "/uploads/{upload_id}/complete", 400, ids={"id": up["id"]}, json={"part_ids": parts[:1]})
    done = api.call("POST", "/uploads/{upload_id}/complete", ids={"id": up["id"]}, json={"part_ids": parts})
    assert done["status"] == "completed" and done["file"]["bytes"] == len(data)
    assert api.call("GET", "/files/{file_id}/content", ids={"id": done["file"]["id"]}).content == data
    other = api.call("POST", "/uploads", json=body)
    assert api.call("POST", "/uploads/{upload_id}/cancel", ids={"id": other["id"]})["status"] == "cancelled"


def test_job_lifecycle_endpoints_conform(api):
    train, valid = upload(api, chat_jsonl(12)), upload(api, chat_jsonl(10), "valid.jsonl")
    created = api.call("POST", "/fine_tuning/jobs", json={
        "model": MODEL, "training_file": train, "validation_file": valid, "suffix": "spec",
        "seed": 7, "metadata": {"ftm_run_id": "run-spec"},
        "method": {"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 2}}}})
    ids = {"id": created["id"]}
    listed = api.call("GET", "/fine_tuning/jobs", params={"metadata[ftm_run_id]": "run-spec", "limit": 5})
    assert [j["id"] for j in listed["data"]] == [created["id"]]
    wait_for(api, created["id"], {"running"})
    paused = api.call("POST", "/fine_tuning/jobs/{fine_tuning_job_id}/pause", ids=ids, allow=[paused_enum])
    assert paused["status"] == "paused"
    api.call("GET", "/fine_tuning/jobs/{fine_tuning_job_id}", ids=ids, allow=[paused_enum])
    assert api.call("POST", "/fine_tuning/jobs/{fine_tuning_job_id}/resume", ids=ids)["status"] == "queued"
    done = wait_for(api, created["id"], {"succeeded", "failed"})
    assert done["status"] == "succeeded" and done["fine_tuned_model"].startswith("ft:")
    events = api.call("GET", "/fine_tuning/jobs/{fine_tuning_job_id}/events", ids=ids, params={"limit": 5})
    api.call("GET", "/fine_tuning/jobs/{fine_tuning_job_id}/events", ids=ids, params={"after": events["data"][-1]["id"]})
    checkpoints = api.call("GET", "/fine_tuning/jobs/{fine_tuning_job_id}/checkpoints", ids=ids)
    assert checkpoints["data"][0]["metrics"]["full_valid_loss"] > 0
    api.call("GET", "/files/{file_id}/content", ids={"id": done["result_files"][0]})
    api.call("POST", "/fine_tuning/jobs/{fine_tuning_job_id}/cancel", 400, ids=ids)


def test_cancel_and_failed_jobs_conform(api):
    train = upload(api, chat_jsonl(12))
    job = api.call("POST", "/fine_tuning/jobs", json={"model": MODEL, "training_file": train})
    cancelled = api.call("POST", "/fine_tuning/jobs/{fine_tuning_job_id}/cancel", ids={"id": job["id"]})
    assert cancelled["status"] == "cancelled"
    short = upload(api, chat_jsonl(3))
    job = api.call("POST", "/fine_tuning/jobs", json={"model": MODEL, "training_file": short})
    failed = wait_for(api, job["id"], {"failed", "succeeded"})
    assert failed["error"]["code"] == "invalid_n_examples"
    api.call("POST", "/fine_tuning/jobs", 400, json={"model": "gpt-2", "training_file": train})
    api.call("GET", "/fine_tuning/jobs/{fine_tuning_job_id}", 404, ids={"id": "ftjob-nope"})


def test_empty_error_object_is_the_only_departure(api, server):
    """OpenAI sends `"error": {}` on healthy jobs; the spec's schema does not allow it."""
    server.faults.add("empty_error")
    train = upload(api, chat_jsonl(12))

    def empty_error(e):
        return list(e.path)[-1:] == ["error"] and e.instance == {}

    job = api.call("POST", "/fine_tuning/jobs", json={"model": MODEL, "training_file": train}, allow=[empty_error])
    assert job["error"] == {}
    with pytest.raises(AssertionError, match="error"):  # without the allowance, it fails the spec
        api.call("GET", "/fine_tuning/jobs/{fine_tuning_job_id}", ids={"id": job["id"]})


def test_models_and_chat_conform(api):
    train = upload(api, chat_jsonl(12))
    job = api.call("POST", "/fine_tuning/jobs", json={"model": MODEL, "training_file": train, "suffix": "chat"})
    model = wait_for(api, job["id"], {"succeeded"})["fine_tuned_model"]
    assert model in [m["id"] for m in api.call("GET", "/models")["data"]]
    api.call("GET", "/models/{model}", ids={"id": model})
    reply = api.call("POST", "/chat/completions", json={
        "model": model, "messages": [{"role": "user", "content": "Capital of country 4?"}]})
    assert json.loads(reply["choices"][0]["message"]["content"]) == {"capital": "City 4"}
    assert api.call("DELETE", "/models/{model}", ids={"id": model})["deleted"] is True
    api.call("POST", "/chat/completions", 404, json={"model": model, "messages": [{"role": "user", "content": "hi"}]})


def test_error_bodies_conform(api, server):
    for kind, status in (("429", 429), ("500", 500), ("503", 503), ("401", 401)):
        server.faults.add(kind, "GET", "/models")
        api.call("GET", "/models", status)
    server.faults.add("403")
    api.call("POST", "/fine_tuning/jobs", 403, json={"model": MODEL, "training_file": "file-x"})
    api.http.headers.pop("Authorization")
    api.call("GET", "/models", 401)


def test_every_path_of_the_spec_is_served(api, spec):
    """Each (method, path) in the spec answers something other than 'Invalid URL' here."""
    http = httpx.Client(base_url=api.server.url, headers={"Authorization": "Bearer sk-test"})
    for template, ops in spec["paths"].items():
        for method in ops:
            if template == "/chat/completions" and method == "get":
                continue  # stored completions: not part of fine-tuning
            path = template.replace("{", "").replace("}", "")
            response = http.request(method.upper(), path, json={} if method == "post" else None)
            assert not response.text.startswith('{"error": {"message": "Invalid URL'), (method, template)
