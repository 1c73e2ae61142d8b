"""What clients of OpenAI's API notice, tried as a picky client would: n seeded choices that differ
reproducibly, a system_fingerprint, the spec's content type for file content, OpenAI endpoints this
server lacks named as unsupported (never "Invalid URL"), integrations refused rather than dropped,
an upload's fields and MIME type checked, and a paused job that stays paused.

The stand-in and `ftm serve` share these routes; the stand-in is used where no model is needed.
"""

from __future__ import annotations

import json
import time

import httpx
import openai
import pytest

from fixtures_local import tiny_llama  # noqa: F401  (fixture)
from ftmanager.serve import serve
from ftmanager.standin import standin

MODEL = "gpt-4o-mini-2024-07-18"
ROWS = "".join(json.dumps({"messages": [{"role": "user", "content": f"Question {i}?"},
                                        {"role": "assistant", "content": f"Answer {i}."}]}) + "\n"
               for i in range(12)).encode()


@pytest.fixture(scope="module")
def server():
    with standin(speed=5) as srv:
        yield srv


@pytest.fixture
def client(server):
    return openai.OpenAI(api_key="sk-test", base_url=server.url, max_retries=0)


def test_file_content_has_the_specs_content_type(server, client):
    f = client.files.create(file=("d.jsonl", ROWS), purpose="fine-tune")
    answer = httpx.get(f"{server.url}/files/{f.id}/content", headers={"Authorization": "Bearer k"})
    assert answer.status_code == 200 and answer.content == ROWS
    assert answer.headers["content-type"].split(";")[0] == "application/json"


def test_permissions_and_graders_are_named_as_unsupported(client):
    checkpoint = f"ft:{MODEL}:org:x:abc123:ckpt-step-10"
    calls = [lambda: client.fine_tuning.checkpoints.permissions.retrieve(checkpoint),
             lambda: client.fine_tuning.checkpoints.permissions.create(checkpoint, project_ids=["proj_1"]),
             lambda: client.fine_tuning.checkpoints.permissions.delete("cp_1", fine_tuned_model_checkpoint=checkpoint),
             lambda: client.fine_tuning.alpha.graders.run(grader={"type": "string_check", "name": "g", "input": "a",
                                                                  "reference": "a", "operation": "eq"},
                                                          model_sample="a"),
             lambda: client.fine_tuning.alpha.graders.validate(grader={"type": "string_check", "name": "g",
                                                                       "input": "a", "reference": "a",
                                                                       "operation": "eq"})]
    for call, word in zip(calls, ["permissions"] * 3 + ["Graders"] * 2):
        with pytest.raises(openai.BadRequestError) as err:
            call()
        assert word in err.value.message and "not supported" in err.value.message
        assert "Invalid URL" not in err.value.message


@pytest.mark.parametrize("integrations", [[{"type": "wandb", "wandb": {"project": "p"}}], [{"type": "x"}], "wandb"])
def test_integrations_are_refused_never_dropped(client, integrations):
    f = client.files.create(file=("d.jsonl", ROWS), purpose="fine-tune")
    with pytest.raises(openai.BadRequestError) as err:
        client.fine_tuning.jobs.create(model=MODEL, training_file=f.id, extra_body={"integrations": integrations})
    assert err.value.param == "integrations"
    if isinstance(integrations, list) and integrations[0]["type"] == "wandb":
        assert "Weights & Biases" in err.value.message


def test_duplicate_multipart_fields_are_a_400(server):
    files = [("purpose", (None, "fine-tune")), ("purpose", (None, "batch")), ("file", ("a.jsonl", ROWS))]
    answer = httpx.post(f"{server.url}/files", files=files, headers={"Authorization": "Bearer k"})
    assert answer.status_code == 400 and "purpose" in answer.json()["error"]["message"]
    files = [("purpose", (None, "fine-tune")), ("file", ("a.jsonl", ROWS)), ("file", ("b.jsonl", b"{}\n"))]
    answer = httpx.post(f"{server.url}/files", files=files, headers={"Authorization": "Bearer k"})
    assert answer.status_code == 400 and "file" in answer.json()["error"]["message"]


@pytest.mark.parametrize("mime", ["banana", "", "image/png", "text/", None, 7])
def test_an_upload_with_an_unknown_mime_type_is_a_400(server, mime):
    body = {"bytes": 5, "filename": "a.jsonl", "purpose": "fine-tune"}
    if mime is not None:
        body["mime_type"] = mime
    answer = httpx.post(f"{server.url}/uploads", json=body, headers={"Authorization": "Bearer k"})
    assert answer.status_code == 400 and answer.json()["error"]["param"] == "mime_type", answer.text


def test_system_fingerprint_is_set_and_stable(client):
    asks = [client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": q}])
            for q in ("hi", "hello")]
    chunks = list(client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}],
                                                 stream=True))
    prints = {a.system_fingerprint for a in asks} | {c.system_fingerprint for c in chunks}
    assert len(prints) == 1 and prints.pop().startswith("fp_")


def test_a_paused_job_stays_paused(client):
    f = client.files.create(file=("d.jsonl", ROWS), purpose="fine-tune")
    job = client.fine_tuning.jobs.create(model=MODEL, training_file=f.id, hyperparameters={"n_epochs": 10})
    deadline = time.time() + 30
    while (job := client.fine_tuning.jobs.retrieve(job.id)).status != "running":
        assert time.time() < deadline
        time.sleep(0.05)
    assert client.fine_tuning.jobs.pause(job.id).status == "paused"
    time.sleep(1.5)  # several steps' worth at this speed
    assert client.fine_tuning.jobs.retrieve(job.id).status == "paused"
    assert client.fine_tuning.jobs.list(limit=1).data[0].status == "paused"
    client.fine_tuning.jobs.cancel(job.id)


@pytest.fixture
def tiny_server(ftm_home, tiny_llama):  # noqa: F811
    ftm_home.mkdir(parents=True, exist_ok=True)
    (ftm_home / "served_models.toml").write_text(f'[models."{MODEL}"]\nlocal = "{tiny_llama}"\n')
    with serve(port=0, api_key="sk-compat", device="cpu") as srv:
        yield openai.OpenAI(api_key="sk-compat", base_url=srv.url, max_retries=0)


def test_n_seeded_choices_differ_and_repeat(tiny_server):
    def texts(seed: int, stream: bool = False) -> list[str]:
        ask = dict(model=MODEL, messages=[{"role": "user", "content": "Tell me a story."}], n=4, seed=seed,
                   temperature=1.0, max_tokens=12)
        if not stream:
            answer = tiny_server.chat.completions.create(**ask)
            assert answer.system_fingerprint.startswith("fp_")
            return [c.message.content for c in sorted(answer.choices, key=lambda c: c.index)]
        out = [""] * 4
        for chunk in tiny_server.chat.completions.create(**ask, stream=True):
            for c in chunk.choices:
                out[c.index] += c.delta.content or ""
        return out

    first = texts(7)
    assert len(set(first)) > 1, first  # n different choices, not one answer n times
    assert texts(7) == first  # the same seed, the same choices
    assert texts(7, stream=True) == first


@pytest.mark.parametrize("name", ["max_tokens", "max_completion_tokens"])
def test_max_tokens_over_the_models_limit_is_openais_400(client, name):
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}], **{name: 100000})
    assert err.value.param == name and err.value.code == "invalid_value"
    assert err.value.message.endswith("This model supports at most 16384 completion tokens, whereas you provided 100000.")


def test_max_tokens_over_the_local_models_context_is_a_400(tiny_server):
    with pytest.raises(openai.BadRequestError) as err:
        tiny_server.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}],
                                            max_tokens=10_000_000)
    assert err.value.param == "max_tokens" and "whereas you provided 10000000" in err.value.message
    ok = tiny_server.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=3)
    assert ok.choices[0].message.content is not None
