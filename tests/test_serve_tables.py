"""`ftm serve` against a hostile served_models.toml and a second server on the same FTM_HOME.

A broken table is one line before anything listens; a row whose model cannot be loaded is a 400
naming the row, at once, with the hub never asked; no answer names a path of the server's.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time

import openai
import pytest

from conftest import ftm
from fixtures_local import tiny_llama  # noqa: F401  (fixture)
from ftmanager.errors import InvalidInput
from ftmanager.serve import serve

KEY = "sk-tables-test-key"
BROKEN = {
    "bad TOML": b'[models."gpt-4o-mini"\nlocal = 1\n',
    "bad UTF-8": b'[models."gpt-4o-mini"]\nlocal = "\xff\xfe"\n',
    "local not a string": b'[models."gpt-4o-mini"]\nlocal = 7\n',
    "row not a table": b'models = {"gpt-4o-mini" = 3}\n',
    "models not a table": b'models = "gpt-4o-mini"\n',
    "options not a table": b'[models."gpt-4o-mini"]\nlocal = "x/y"\noptions = "fast"\n',
    "unknown option": b'[models."gpt-4o-mini"]\nlocal = "x/y"\nlcoal = "x/z"\n',
    "unknown table": b'[model."gpt-4o-mini"]\nlocal = "x/y"\n',
    "empty local": b'[models."gpt-4o-mini"]\nlocal = ""\n',
    "unknown backend option": b'[models."gpt-4o-mini"]\nlocal = "x/y"\noptions = {quantise = false}\n',
    "bad option value": b'[models."gpt-4o-mini"]\nlocal = "x/y"\noptions = {lora_r = 0}\n',
}


def listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize("kind", sorted(BROKEN))
def test_a_broken_table_is_one_line_before_the_server_listens(ftm_home, kind):
    ftm_home.mkdir(parents=True, exist_ok=True)
    (ftm_home / "served_models.toml").write_bytes(BROKEN[kind])
    port = free_port()
    with pytest.raises(InvalidInput) as err:
        serve(port=port)
    assert "served_models.toml" in err.value.line() and "\n" not in err.value.line()
    assert not listening(port)


def test_a_folder_at_the_tables_path_is_one_line_from_the_cli(ftm_home):
    (ftm_home / "served_models.toml").mkdir(parents=True)
    result = ftm("serve", "--port", free_port(), timeout=60)
    assert result.code == 1, result
    assert result.err.startswith("Error:") and "is a folder" in result.err and len(result.err.splitlines()) == 1, result
    assert "Traceback" not in result.err + result.out


def test_a_second_server_on_one_home_refuses_to_start_in_one_line(ftm_home):
    with serve(port=0, api_key=KEY) as first:
        with pytest.raises(InvalidInput) as err:
            serve(port=0, api_key=KEY)
        assert first.url in err.value.line() and "FTM_HOME" in err.value.line()
        result = ftm("serve", "--port", "0", timeout=60)
        assert result.code == 1 and len(result.err.splitlines()) == 1 and first.url in result.err, result
    with serve(port=0, api_key=KEY):  # the first one gone, its claim went with it
        pass


class SilentHub:
    """A "Hugging Face hub" that accepts connections and never answers (a hub that hangs)."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.held, self.port = [], self.sock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                self.held.append(self.sock.accept()[0])
            except OSError:
                return


def test_a_row_that_cannot_be_loaded_is_a_400_naming_it_at_once(ftm_home, tmp_path):
    ftm_home.mkdir(parents=True, exist_ok=True)
    (ftm_home / "served_models.toml").write_text('[models."gpt-broken"]\nlocal = "no-such-org/no-such-model"\n'
                                                 f'[models."gpt-folder"]\nlocal = "{tmp_path / "nothing-here"}"\n')
    hub = SilentHub()
    env = {**os.environ, "HF_ENDPOINT": f"http://127.0.0.1:{hub.port}", "HF_HOME": str(tmp_path / "hf"),
           "FTM_SERVE_API_KEY": KEY}
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        env.pop(name, None)
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "ftmanager", "serve", "--port", str(port), "--device", "cpu"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 60
        while not listening(port):
            assert proc.poll() is None and time.time() < deadline, proc.communicate()
            time.sleep(0.2)
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=KEY, max_retries=0, timeout=40)
        for name in ("gpt-broken", "gpt-folder"):
            started = time.time()
            with pytest.raises(openai.BadRequestError) as err:
                client.chat.completions.create(model=name, messages=[{"role": "user", "content": "hi"}])
            assert time.time() - started < 30  # no wait on a hub that never answers
            message = json.dumps(err.value.body)
            assert f'[models.\\"{name}\\"]' in message and "served_models.toml" in message, message
            assert str(tmp_path) not in message and str(ftm_home) not in message, message
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.fixture
def tiny_table(ftm_home, tiny_llama):  # noqa: F811
    ftm_home.mkdir(parents=True, exist_ok=True)
    (ftm_home / "served_models.toml").write_text(f'[models."gpt-4o-mini-2024-07-18"]\nlocal = "{tiny_llama}"\n')
    return tiny_llama


@pytest.mark.parametrize("content", [b"not json at all\n", b'{"messages": 3}\n', b"\xff\xfe\n", b""])
def test_a_failed_jobs_error_names_its_file_by_id_not_by_path(tiny_table, ftm_home, content):
    with serve(port=0, api_key=KEY, device="cpu") as server:
        client = openai.OpenAI(base_url=server.url, api_key=KEY, max_retries=0)
        upload = client.files.create(file=("bad.jsonl", content), purpose="fine-tune")
        job = client.fine_tuning.jobs.create(model="gpt-4o-mini-2024-07-18", training_file=upload.id)
        deadline = time.time() + 60
        while (job := client.fine_tuning.jobs.retrieve(job.id)).status != "failed":
            assert time.time() < deadline, job
            time.sleep(0.2)
        shown = json.dumps(job.to_dict()) + json.dumps([e.to_dict() for e in client.fine_tuning.jobs.list_events(job.id)])
        assert job.error.param == "training_file" and job.error.message
        assert str(ftm_home) not in shown and str(server.state.data_dir) not in shown, shown


def test_a_job_on_a_row_that_cannot_be_loaded_is_refused_naming_it(ftm_home, tmp_path):
    ftm_home.mkdir(parents=True, exist_ok=True)
    (ftm_home / "served_models.toml").write_text(f'[models."gpt-gone"]\nlocal = "{tmp_path / "gone"}"\n'
                                                 '[models."gpt-hub"]\nlocal = "no-such-org/no-such-model"\n')
    with serve(port=0, api_key=KEY) as server:
        client = openai.OpenAI(base_url=server.url, api_key=KEY, max_retries=0)
        upload = client.files.create(file=("d.jsonl", b'{"messages": []}\n'), purpose="fine-tune")
        for name in ("gpt-gone", "gpt-hub"):
            with pytest.raises(openai.BadRequestError) as err:
                client.fine_tuning.jobs.create(model=name, training_file=upload.id)
            assert f'[models."{name}"]' in err.value.message and str(tmp_path) not in err.value.message
        assert client.fine_tuning.jobs.list().data == []
