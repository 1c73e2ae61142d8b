"""A hostile client at `ftm serve`'s DPO door: files of the other kind, bad betas, odd and huge
method objects, no key, deleted files, an ft: model this server never made. Each is a JSON 400
(401 for the key) in OpenAI's shape naming the param, with nothing recorded in the ledger.
No training runs here: every refusal comes before a run, or fails the job before it trains."""

from __future__ import annotations

import json

import httpx
import openai
import pytest

from fixtures_local import tiny_llama  # noqa: F401  (fixture)
from ftmanager.ledger import ledger
from ftmanager.serve import serve
from test_serve_doors import assert_openai_error, raw
from test_serve_dpo import dpo, pairs
from test_serve_jobs import BASE, KEY, rows, tiny_table, wait  # noqa: F401  (fixture)

pytest.importorskip("peft")


@pytest.fixture
def client(tiny_table, ftm_home):
    with serve(port=0, api_key=KEY, device="cpu") as srv:
        c = openai.OpenAI(base_url=srv.url, api_key=KEY, max_retries=0)
        c.srv = srv
        yield c


def refused(c, param: str, **job) -> dict:
    """The 400 for a create-job request, checked for OpenAI's shape, our privacy, and no record."""
    with pytest.raises(openai.BadRequestError) as caught:
        c.fine_tuning.jobs.create(model=job.pop("model", BASE), **job)
    error = caught.value.body
    assert set(error) == {"message", "type", "param", "code"} and error["param"] == param, error
    text = json.dumps(error)
    assert "Traceback" not in text and ".py" not in text and str(c.srv.state.data_dir) not in text
    assert len(error["message"]) < 400
    assert c.fine_tuning.jobs.list().data == [] and ledger().api_jobs() == [] and ledger().runs() == []
    return error


def upload(c, name: str, data: bytes) -> str:
    return c.files.create(file=(name, data), purpose="fine-tune").id


def test_a_file_of_the_other_kind_is_a_400_naming_it(client):
    prefs, chats = upload(client, "p.jsonl", pairs()), upload(client, "c.jsonl", rows("zz"))
    error = refused(client, "training_file", training_file=chats, method=dpo(beta=0.1))
    assert "preference" in error["message"] and chats in error["message"]
    refused(client, "training_file", training_file=prefs)  # no method: supervised
    refused(client, "training_file", training_file=prefs, method={"type": "supervised"})
    refused(client, "validation_file", training_file=prefs, validation_file=chats, method=dpo())
    refused(client, "validation_file", training_file=chats, validation_file=prefs)


@pytest.mark.parametrize("beta", [0, -1, 2.5, "high", True, [0.1], {"v": 1}, "1" * 100_000])
def test_a_beta_out_of_range_or_not_a_number_is_a_400(client, beta):
    prefs = upload(client, "p.jsonl", pairs())
    refused(client, "method.dpo.hyperparameters.beta", training_file=prefs, method=dpo(beta=beta))


@pytest.mark.parametrize("beta", [b"NaN", b"Infinity", b"1e999"])
def test_a_beta_no_sdk_would_send_is_a_400(client, beta):
    """JSON's outlaws, as a hand-written client sends them: the body is refused as JSON, unread."""
    body = (b'{"model": "%s", "training_file": "%s", "method": {"type": "dpo", "dpo": {"hyperparameters": '
            b'{"beta": %s}}}}' % (BASE.encode(), upload(client, "p.jsonl", pairs()).encode(), beta))
    answer = httpx.post(f"{client.srv.url}/fine_tuning/jobs", content=body,
                        headers={"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"})
    assert answer.status_code == 400 and set(answer.json()["error"]) == {"message", "type", "param", "code"}
    assert ledger().api_jobs() == [] and ledger().runs() == []


@pytest.mark.parametrize("method, param", [
    ({"type": "reinforcement"}, "method.type"),
    ({"type": ["dpo"]}, "method.type"),
    ({"type": {"dpo": 1}}, "method.type"),
    ({"type": "d" * 100_000}, "method.type"),
    (dpo(gamma=1), "method.dpo.hyperparameters.gamma"),
    ({"type": "dpo", "dpo": {"hyperparameters": {f"k{i}": i for i in range(20_000)}}}, "method.dpo.hyperparameters.k0"),
    ({"type": "dpo", "supervised": {"hyperparameters": {}}}, "method.supervised"),
    ({"type": "dpo", "dpo": {"hyperparameters": {}, "extra": 1}}, "method.dpo.extra"),
    ({"type": "dpo", "dpo": {"hyperparameters": [0.1]}}, "method.dpo.hyperparameters"),
    ({"type": "supervised", "supervised": {"hyperparameters": {"beta": 0.1}}}, "method.supervised.hyperparameters.beta"),
])
def test_odd_and_huge_method_objects_are_a_400_naming_the_param(client, method, param):
    prefs = upload(client, "p.jsonl", pairs())
    refused(client, param, training_file=prefs, method=method)


def test_a_deleted_file_and_a_foreign_model_are_400s(client):
    prefs = upload(client, "p.jsonl", pairs())
    client.files.delete(prefs)
    error = refused(client, "training_file", training_file=prefs, method=dpo())
    assert error["code"] == "invalid_file"
    prefs = upload(client, "p.jsonl", pairs())
    refused(client, "model", model=f"ft:{BASE}:someone-else::abc123", training_file=prefs, method=dpo())


def test_a_broken_pair_fails_its_job_by_line_as_openai_says_it(client):
    lines = pairs().splitlines(keepends=True)
    broken = json.loads(lines[2])
    del broken["non_preferred_output"]
    lines[2] = json.dumps(broken).encode() + b"\n"
    job = client.fine_tuning.jobs.create(model=BASE, training_file=upload(client, "p.jsonl", b"".join(lines)),
                                         method=dpo())
    failed = wait(lambda: (j := client.fine_tuning.jobs.retrieve(job.id)).status == "failed" and j, timeout=60)
    assert failed.error.param == "training_file" and "Line 3" in failed.error.message
    assert "non_preferred_output" in failed.error.message and ledger().runs() == []


def test_no_key_is_a_401_before_the_job_body_is_read(client):
    host_port = client.srv.url.split("//")[1].split("/")[0]
    head = (f"POST /v1/fine_tuning/jobs HTTP/1.1\r\nHost: {host_port}\r\nContent-Type: application/json\r\n"
            "Content-Length: 300000000\r\n\r\n{\"method\": {\"type\": \"dpo\"").encode()
    assert_openai_error(raw(client.srv, head), 401)
    assert ledger().api_jobs() == []
