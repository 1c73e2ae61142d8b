"""`ftm serve` at the door: keys, loopback, upload limits, the model table, streaming, the CLI.

Nothing here trains or loads a model (see test_serve_workflow.py for that): these are the
answers a client gets before any work starts, in OpenAI's error shape.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import httpx
import openai
import pytest

from ftmanager.standin import standin
from ftmanager.serve import serve
from ftmanager.serve.table import SHIPPED

KEY = "sk-serve-test-key"


@pytest.fixture
def server(ftm_home):
    with serve(port=0, api_key=KEY, max_file_bytes=2048) as srv:
        yield srv


def client(srv, key=KEY) -> openai.OpenAI:
    return openai.OpenAI(base_url=srv.url, api_key=key, max_retries=0)


def test_binds_loopback_and_refuses_a_missing_or_wrong_key_in_openais_shape(server):
    assert server.url.startswith("http://127.0.0.1:")
    bare = httpx.get(f"{server.url}/models")
    assert bare.status_code == 401
    assert set(bare.json()["error"]) == {"message", "type", "param", "code"}
    with pytest.raises(openai.AuthenticationError) as err:
        client(server, "sk-wrong-key-1234").models.list()
    assert "sk-wrong-key-1234" not in str(err.value)  # a key is never echoed whole
    assert "gpt-4o-mini-2024-07-18" in {m.id for m in client(server).models.list()}


def test_uploads_over_the_limit_are_refused_before_and_after_spooling(server, tmp_path):
    small = tmp_path / "small.jsonl"
    small.write_text('{"messages": []}\n' * 200)  # 3.4 KB: over this server's 2 KB file limit
    with pytest.raises(openai.BadRequestError) as err:
        client(server).files.create(file=small.open("rb"), purpose="fine-tune")
    assert err.value.status_code == 400 and "too large" in err.value.message
    huge = httpx.post(f"{server.url}/files", headers={"Authorization": f"Bearer {KEY}"},
                      files={"file": ("big.jsonl", b"x" * (2 << 20))}, data={"purpose": "fine-tune"})
    assert huge.status_code == 413 and huge.json()["error"]["code"] == "request_too_large"
    assert not list(server.state.data_dir.glob("body-*"))  # nothing of it was kept


def test_an_unmapped_base_model_is_a_400_that_names_the_table(server, ftm_home, tmp_path):
    data = tmp_path / "train.jsonl"
    data.write_text(json.dumps({"messages": [{"role": "user", "content": "hi"},
                                             {"role": "assistant", "content": "yo"}]}) + "\n")
    c = client(server)
    uploaded = c.files.create(file=data.open("rb"), purpose="fine-tune")
    with pytest.raises(openai.BadRequestError) as err:
        c.fine_tuning.jobs.create(model="gpt-9-mega", training_file=uploaded.id)
    assert err.value.body["param"] == "model"
    assert "served_models.toml in the server's FTM_HOME" in err.value.message  # the table, not our paths
    assert str(ftm_home) not in err.value.message and str(SHIPPED) not in err.value.message
    with pytest.raises(openai.NotFoundError) as err:
        c.chat.completions.create(model="gpt-9-mega", messages=[{"role": "user", "content": "hi"}])
    assert "served_models.toml" in err.value.message


def test_the_users_table_maps_new_names_and_overrides_shipped_ones(server, ftm_home):
    (ftm_home / "served_models.toml").write_text(
        '[models."acme-small"]\nlocal = "/models/acme"\n[models."gpt-4o-mini"]\nlocal = "/models/other"\n')
    names = {m.id for m in client(server).models.list()}
    assert {"acme-small", "gpt-4o-mini", "gpt-4.1-mini-2025-04-14"} <= names


def test_streamed_chat_arrives_as_server_sent_chunks_and_ends_with_a_finish_reason():
    # The front is shared: the stand-in's clock service answers in one piece, which is enough here.
    with standin(speed=1000) as srv:
        c = openai.OpenAI(base_url=srv.url, api_key="sk-any", max_retries=0)
        stream = c.chat.completions.create(model="gpt-4o-mini-2024-07-18", stream=True,
                                           stream_options={"include_usage": True},
                                           messages=[{"role": "user", "content": "hello"}])
        chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert "was not fine-tuned" in text
    assert [ch.choices[0].finish_reason for ch in chunks if ch.choices][-1] == "stop"
    assert chunks[-1].usage.completion_tokens > 0


def test_ftm_serve_command_prints_its_url_and_stops_on_sigterm(ftm_home):
    # The key comes from the environment, so it never shows among the process's arguments in `ps`.
    proc = subprocess.Popen([sys.executable, "-m", "ftmanager", "serve", "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "FTM_SERVE_API_KEY": KEY})
    try:
        first = proc.stdout.readline()
        url = first.split(" on ")[1].split()[0]
        assert url.startswith("http://127.0.0.1:")
        assert httpx.get(f"{url}/models").status_code == 401
        assert httpx.get(f"{url}/models", headers={"Authorization": "Bearer sk-other"}).status_code == 401
        listed = httpx.get(f"{url}/models", headers={"Authorization": f"Bearer {KEY}"}).json()
        assert "gpt-4o-mini" in {m["id"] for m in listed["data"]}
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert KEY not in out + err


def test_bad_serve_flags_are_one_line_and_nothing_listens(ftm_home):
    from conftest import ftm

    for args, line in ((["--device", "nosuch"], "Error: no device called 'nosuch'. Use auto, cpu, cuda, cuda:N or mps."),
                       (["--port", "99999"], "Error: --port must be 0 to 65535, not 99999. Use --port 0 for a free one.")):
        bad = ftm("serve", "--port", "0", *args)  # the later --port wins
        assert bad.code == 1 and bad.err == line + "\n" and "ftm serve:" not in bad.out


def test_the_front_serves_another_providers_paths_and_error_shape():
    """What a Together or Fireworks stand-in needs: its own routes, prefix and error body."""
    import re

    from ftmanager.standin import ClockService, Server

    def dataset(srv, req):
        return {"name": f"accounts/{req.params[0]}/datasets/{req.json()['datasetId']}", "state": "UPLOADING"}

    routes = [("POST", re.compile(r"/accounts/([^/]+)/datasets"), dataset, False)]
    fireworks_error = lambda err: {"code": err.status, "message": err.message}  # noqa: E731
    with Server(ClockService(), routes=routes, prefix="/v1", error_body=fireworks_error).start() as srv:
        auth = {"Authorization": "Bearer fw-key"}
        made = httpx.post(f"{srv.url}/accounts/acme/datasets", json={"datasetId": "caps"}, headers=auth)
        assert made.json() == {"name": "accounts/acme/datasets/caps", "state": "UPLOADING"}
        assert httpx.get(f"{srv.url}/fine_tuning/jobs", headers=auth).json()["code"] == 404
        bad = httpx.post(f"{srv.url}/accounts/acme/datasets", content=b"{", headers=auth)
        assert bad.status_code == 400 and set(bad.json()) == {"code", "message"}
