"""The stand-in's behaviour beyond shapes: OpenAI's validation, its clock, paging, limits, faults."""

from __future__ import annotations

import base64
import json
import time

import httpx
import openai
import pytest

from ftmanager.standin import standin
from ftmanager.standin.faults import parse

MODEL = "gpt-4o-mini-2024-07-18"


@pytest.fixture(scope="module")
def server():
    with standin(speed=50, max_part_bytes=4096, max_file_bytes=8192) as srv:
        yield srv


@pytest.fixture
def client(server):
    server.faults.clear()
    return openai.OpenAI(api_key="sk-test", base_url=server.url, max_retries=0)


def lines(*rows) -> bytes:
    return "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows).encode()


def example(i: int, answer: str | None = None) -> dict:
    return {"messages": [{"role": "user", "content": f"Question {i}?"},
                         {"role": "assistant", "content": answer or f"Answer {i}."}]}


def run_job(client, data: bytes, **params):
    f = client.files.create(file=("d.jsonl", data), purpose="fine-tune")
    job = client.fine_tuning.jobs.create(model=MODEL, training_file=f.id, **params)
    deadline = time.time() + 20
    while job.status not in ("succeeded", "failed", "cancelled"):
        assert time.time() < deadline
        time.sleep(0.02)
        job = client.fine_tuning.jobs.retrieve(job.id)
    return job


@pytest.mark.parametrize("data, code, words", [
    (lines(*[example(i) for i in range(3)]), "invalid_n_examples", "has 3 example(s), but must have at least 10"),
    (lines(*[example(i) for i in range(11)], "{not json"), "invalid_file_format", "Line 12"),
    (lines(*[example(i) for i in range(11)], {"messages": [{"role": "user", "content": "hi"}]}),
     "invalid_file_format", "at least one assistant message"),
    (lines(*[example(i) for i in range(11)], example(99, "stop <|fim_suffix|>")),
     "invalid_file_format", "invalid special tokens"),
])
def test_bad_training_files_fail_the_job_as_openai_does(client, data, code, words):
    job = run_job(client, data)
    assert job.status == "failed" and job.error.code == code and words in job.error.message
    assert job.fine_tuned_model is None and job.trained_tokens is None
    events = client.fine_tuning.jobs.list_events(job.id).data
    assert events[0].level == "error" and "failed" in events[0].message


def test_metrics_fall_and_results_alternate_between_plain_and_base64(server, client):
    server.service.results_base64 = "alternate"
    raws = []
    for _ in range(2):
        job = run_job(client, lines(*[example(i) for i in range(10)]), method={
            "type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 1}}})
        raws.append(client.files.content(job.result_files[0]).read())
    decoded = [raw if raw.startswith(b"step") else base64.b64decode(raw) for raw in raws]
    assert sum(raw.startswith(b"step") for raw in raws) == 1 and decoded[0] == decoded[1]
    rows = [r.split(",") for r in decoded[0].decode().split()[1:]]
    losses = [float(r[1]) for r in rows]
    assert len(rows) == 10 and losses == sorted(losses, reverse=True) and rows[0][3] == ""


def test_chat_answers_from_the_training_file(client):
    job = run_job(client, lines(*[example(i, f'{{"n": {i}}}') for i in range(10)]), suffix="chat")
    ask = client.chat.completions.create
    said = ask(model=job.fine_tuned_model, messages=[{"role": "user", "content": "question 7?"}])
    assert said.choices[0].message.content == '{"n": 7}'
    other = ask(model=job.fine_tuned_model, messages=[{"role": "user", "content": "Something else"}])
    assert "no training example" in other.choices[0].message.content
    base = ask(model=MODEL, messages=[{"role": "user", "content": "Question 7?"}])
    assert base.choices[0].message.content != '{"n": 7}'
    with pytest.raises(openai.NotFoundError):
        ask(model="ft:nope", messages=[{"role": "user", "content": "hi"}])
    kept = [c.fine_tuned_model_checkpoint for c in client.fine_tuning.jobs.checkpoints.list(job.id).data]
    assert [k.rsplit("-", 1)[1] for k in kept] == ["100", "90", "80"]  # the last 3 of 10 epochs
    assert ask(model=kept[-1], messages=[{"role": "user", "content": "Question 7?"}]).choices
    with pytest.raises(openai.NotFoundError):  # older checkpoints are no longer served
        ask(model=kept[0].replace("ckpt-step-100", "ckpt-step-70"), messages=[{"role": "user", "content": "hi"}])


def test_jobs_list_pages_newest_first(client):
    f = client.files.create(file=("d.jsonl", lines(*[example(i) for i in range(10)])), purpose="fine-tune")
    made = [client.fine_tuning.jobs.create(model=MODEL, training_file=f.id, metadata={"batch": "paging"}).id
            for _ in range(5)]
    first = client.fine_tuning.jobs.list(limit=2, metadata={"batch": "paging"})
    assert [j.id for j in first.data] == made[::-1][:2] and first.has_more
    rest = client.fine_tuning.jobs.list(limit=10, after=first.data[-1].id, metadata={"batch": "paging"})
    assert [j.id for j in rest.data] == made[::-1][2:] and not rest.has_more
    assert list(client.fine_tuning.jobs.list(metadata={"batch": "other"})) == []


def test_size_limits_and_upload_rules(server, client):
    with pytest.raises(openai.BadRequestError, match="too large"):
        client.files.create(file=("big.jsonl", b"x" * 9000), purpose="fine-tune")
    up = client.uploads.create(bytes=9000, filename="big.jsonl", mime_type="text/jsonl", purpose="fine-tune")
    with pytest.raises(openai.BadRequestError, match="at most 4096"):
        client.uploads.parts.create(up.id, data=b"x" * 5000)
    parts = [client.uploads.parts.create(up.id, data=b"x" * 3000).id for _ in range(3)]
    assert client.uploads.complete(up.id, part_ids=parts).file.bytes == 9000
    with pytest.raises(openai.BadRequestError, match="no longer accepts"):
        client.uploads.parts.create(up.id, data=b"x")


def test_a_chunked_body_is_read_like_any_other(server):
    body = b'{"bytes": 5, "filename": "a.jsonl", "mime_type": "text/jsonl", "purpose": "fine-tune"}'
    response = httpx.post(f"{server.url}/uploads", content=iter([body[:10], body[10:]]),
                          headers={"Authorization": "Bearer sk-test", "Content-Type": "application/json"})
    assert response.status_code == 200 and response.json()["bytes"] == 5


def test_faults_are_used_up_and_drop_does_nothing(server, client):
    server.faults.add(**parse("drop POST /fine_tuning/jobs times=2"))
    f = client.files.create(file=("d.jsonl", lines(*[example(i) for i in range(10)])), purpose="fine-tune")
    before = len(server.state.jobs)
    for _ in range(2):
        with pytest.raises(openai.APIConnectionError):
            client.fine_tuning.jobs.create(model=MODEL, training_file=f.id)
    assert len(server.state.jobs) == before  # dropped before anything was done
    client.fine_tuning.jobs.create(model=MODEL, training_file=f.id)
    assert len(server.state.jobs) == before + 1 and server.faults.pending() == []
    with pytest.raises(ValueError, match="unknown fault"):
        server.faults.add("418")


def test_control_endpoints_set_speed_and_report_the_finish(server, client):
    control = httpx.Client(base_url=server.url.replace("/v1", "/_standin"))
    control.post("/faults", json={"kind": "503", "method": "GET", "path": "/models"})
    with pytest.raises(openai.InternalServerError):
        client.models.list()
    assert control.post("/config", json={"speed": 200}).json()["speed"] == 200
    job = run_job(client, lines(*[example(i) for i in range(10)]))
    finished = control.get(f"/jobs/{job.id}").json()
    assert finished["status"] == "succeeded" and finished["terminal_at"] == pytest.approx(job.finished_at, abs=1)
    assert control.get("/requests").json()["by_route"][f"GET /fine_tuning/jobs/{job.id}"] >= 1
    control.post("/config", json={"speed": 50})
