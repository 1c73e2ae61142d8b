"""ftm's Together stand-in, driven by the official `together` SDK unchanged, answers in the
shapes of Together's published spec.

Every JSON response the SDK receives is validated (an httpx response hook on the client the SDK
is given) with jsonschema's Draft4Validator against the schema that together-openapi-subset.json
(tests/specs/, MIT) gives for its path and status; errors against ErrorData. One documented
departure: the spec types SFT's `train_on_inputs` as boolean beside its own oneOf of boolean or
"auto" (which the SDK sends).
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import httpx
import jsonschema
import pytest
import together

from ftmanager.standin.together import standin

SPEC_PATH = Path(__file__).resolve().parent / "specs" / "together-openapi-subset.json"  # MIT: see specs/LICENSES.md
MODEL = "meta-llama/Meta-Llama-3.1-8B-Instruct-Reference"
# The SDK's upload flow uses one path the spec leaves out; it answers with the spec's FileResponse.
SDK_SCHEMAS = {"/files/{id}/preprocess": "FileResponse"}
SDK_ONLY = [(re.compile(r"/files/[^/]+/preprocess$"), "/files/{id}/preprocess")]


@pytest.fixture(scope="module")
def spec() -> dict:
    loaded = openapi_nullable(json.loads(SPEC_PATH.read_text()))
    # the one departure: SFT's train_on_inputs says both "oneOf boolean or 'auto'" and "type:
    # boolean"; Together's SDK (and its own default) send "auto", so the oneOf is what holds
    inputs = loaded["components"]["schemas"]["TrainingMethodSFT"]["properties"]["train_on_inputs"]
    assert inputs.pop("type") == "boolean" and {"enum": ["auto"], "type": "string"} in inputs["oneOf"]
    return loaded


def openapi_nullable(node):
    """OpenAPI 3.0's `nullable: true` as JSON Schema says it (Draft 4 knows no `nullable`)."""
    if isinstance(node, list):
        return [openapi_nullable(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: openapi_nullable(v) for k, v in node.items()}
    if out.pop("nullable", False) and isinstance(out.get("type"), str):
        out["type"] = [out["type"], "null"]
    return out


@pytest.fixture(scope="module")
def adapter(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("weights") / "adapter"
    folder.mkdir()
    (folder / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 8}))
    return folder


@pytest.fixture(scope="module")
def server(adapter):
    with standin(speed=40, adapter=adapter) as srv:
        srv.service.phases.update(pending=0.1, queued=0.1, step=0.05, compressing=0.05, uploading=0.05)
        yield srv


class Checker:
    """Validates each JSON response against the spec; remembers what it checked."""

    def __init__(self, spec: dict):
        self.spec, self.checked, self.problems = spec, set(), []
        self.templates = [(re.compile(re.sub(r"\{\w+\}", "[^/]+", t) + "$"), t) for t in spec["paths"]]

    def __call__(self, response: httpx.Response) -> None:
        if "json" not in response.headers.get("content-type", ""):
            return
        response.read()
        path = response.request.url.path.removeprefix("/v1")
        template = next((t for pattern, t in self.templates if pattern.match(path)), None)
        template = template or next((t for pattern, t in SDK_ONLY if pattern.match(path)), None)
        assert template, f"no spec path for {path}"
        errors = jsonschema.Draft4Validator(self.schema(response, template)).iter_errors(response.json())
        self.problems += [f"{response.request.method} {path}: {list(e.path)}: {e.message}" for e in errors]
        self.checked.add((response.request.method, template, response.status_code))

    def schema(self, response: httpx.Response, template: str) -> dict:
        if response.status_code >= 400:
            inner = {"$ref": "#/components/schemas/ErrorData"}
        elif template in dict(SDK_ONLY).values():
            inner = {"$ref": f"#/components/schemas/{SDK_SCHEMAS[template]}"}
        else:
            op = self.spec["paths"][template][response.request.method.lower()]
            inner = op["responses"][str(response.status_code)]["content"]["application/json"]["schema"]
        return {**inner, "components": self.spec["components"]}


@pytest.fixture
def checked(server, spec):
    checker = Checker(spec)
    client = together.Together(api_key="tg-spec", base_url=server.base_url, max_retries=0,
                               http_client=httpx.Client(event_hooks={"response": [checker]}, timeout=30))
    yield client, checker
    assert not checker.problems, "\n".join(checker.problems[:10])


def train_file(tmp_path, n=12) -> Path:
    path = tmp_path / "train.jsonl"
    path.write_text("".join(json.dumps({"messages": [{"role": "user", "content": f"q{i}"},
                                                     {"role": "assistant", "content": f"a{i}"}]}) + "\n"
                            for i in range(n)))
    return path


def finished(client, job_id: str) -> object:
    deadline = time.time() + 20
    while time.time() < deadline:
        job = client.fine_tuning.retrieve(job_id)
        if job.status in ("completed", "error", "cancelled"):
            return job
        time.sleep(0.05)
    raise AssertionError(f"{job_id} is still {job.status}")


def test_the_sdk_drives_files_and_a_whole_job_and_every_answer_conforms(checked, tmp_path):
    client, checker = checked
    path = train_file(tmp_path)
    uploaded = client.files.upload(file=path, purpose="fine-tune")  # POST /files, 302, PUT, preprocess
    assert uploaded.bytes == path.stat().st_size and uploaded.processing_status == "COMPLETED"
    assert client.files.retrieve(uploaded.id).filename == "train.jsonl"
    assert uploaded.id in [f.id for f in client.files.list().data]
    assert client.files.content(uploaded.id).read() == path.read_bytes()
    job = client.fine_tuning.create(training_file=uploaded.id, model=MODEL, n_epochs=2, lora=True,
                                    train_on_inputs="auto", suffix="spec")  # limits, estimate, create
    done = finished(client, job.id)
    assert done.status == "completed" and done.x_model_output_name.endswith(f"spec-{job.id[3:11]}")
    assert job.id in [j.id for j in client.fine_tuning.list().data]
    events = client.fine_tuning.list_events(job.id).data
    assert events[0].type == "job_pending" and events[-1].type == "job_complete"
    assert [c.step for c in client.fine_tuning.list_checkpoints(job.id).data] == [2, 1]
    assert [m["train/global_step"] for m in client.fine_tuning.list_metrics(job.id, global_step_from=2).metrics] == [2]
    with client.fine_tuning.with_streaming_response.content(ft_id=job.id, checkpoint="adapter") as response:
        assert response.read()[:4] == b"\x28\xb5\x2f\xfd"  # a zstd frame
    assert client.fine_tuning.delete(job.id).message
    assert client.files.delete(uploaded.id).deleted is True
    assert {("POST", "/fine-tunes", 200), ("GET", "/fine-tunes/models/limits", 200),
            ("POST", "/fine-tunes/estimate-price", 200), ("GET", "/fine-tunes/{id}/metrics", 200)} <= checker.checked


def test_cancel_and_refusals_conform(checked, server, tmp_path):
    client, _ = checked
    uploaded = client.files.upload(file=train_file(tmp_path), purpose="fine-tune")
    server.service.phases["queued"] = 30.0
    try:
        job = client.fine_tuning.create(training_file=uploaded.id, model=MODEL, lora=False, train_on_inputs="auto")
        assert job.training_type.type == "Full"
        assert client.fine_tuning.cancel(job.id).status == "cancel_requested"
        with pytest.raises(together.BadRequestError):
            client.fine_tuning.cancel(job.id)
    finally:
        server.service.phases["queued"] = 0.1
    with pytest.raises(together.NotFoundError):
        client.fine_tuning.model_limits(model_name="acme/no-such-model")
    with pytest.raises(together.NotFoundError):
        client.fine_tuning.retrieve("ft-00000000-0000-0000-0000-000000000000")


def test_the_specs_own_multipart_upload_conforms(server, spec, tmp_path):
    checker = Checker(spec)
    http = httpx.Client(base_url=server.base_url, headers={"Authorization": "Bearer tg-spec"},
                        event_hooks={"response": [checker]})
    path = train_file(tmp_path, 3)
    form = {"purpose": "fine-tune", "file_name": "small.jsonl", "file_type": "jsonl"}
    made = http.post("/v1/files/upload", data=form, files={"file": ("small.jsonl", path.read_bytes())}).json()
    assert made["Processed"] is True and made["bytes"] == path.stat().st_size
    assert http.post("/v1/files/upload", data={"purpose": "nonsense", "file_name": "x.jsonl"},
                     files={"file": ("x.jsonl", b"{}")}).status_code == 400
    assert not checker.problems, checker.problems
    assert ("POST", "/files/upload", 400) in checker.checked


def test_every_path_of_the_spec_is_served(server, spec):
    """Each (method, path) in the spec answers something other than 'Invalid URL' here."""
    http = httpx.Client(base_url=server.base_url, headers={"Authorization": "Bearer tg-spec"})
    for template, ops in spec["paths"].items():
        for method in ops:
            path = "/v1" + template.replace("{", "").replace("}", "")
            response = http.request(method.upper(), path, json={} if method == "post" else None)
            assert "Invalid URL" not in response.text and response.status_code != 405, (method, template)
