"""`ftm serve` remembers and answers as a client expects: jobs through cancels and restarts,
every local model in the ledger served, a re-run answering under its OpenAI parent's name.

Real local training of the tiny Llama (a few seconds a job), real processes, the openai SDK.
"""

from __future__ import annotations

import base64
import contextlib
import json
import time

import openai
import psutil
import pytest

from conftest import ftm
from fixtures_local import tiny_llama  # noqa: F401  (fixture)
from ftmanager import paths
from ftmanager.facts import epoch
from ftmanager.ledger import ledger
from ftmanager.standin import standin
from ftmanager.serve import serve

pytest.importorskip("peft")

KEY = "sk-serve-jobs"
BASE = "gpt-4o-mini-2024-07-18"
OPTIONS = {"quantize": "false", "device": "cpu", "learning_rate": "0.05", "lora_dropout": "0.0"}


@pytest.fixture
def tiny_table(ftm_home, tiny_llama):  # noqa: F811
    ftm_home.mkdir(parents=True, exist_ok=True)
    options = ", ".join(f'{k} = "{v}"' for k, v in OPTIONS.items())
    (ftm_home / "served_models.toml").write_text(f'[models."{BASE}"]\nlocal = "{tiny_llama}"\noptions = {{{options}}}\n')
    return tiny_llama


def rows(answer: str, n: int = 10) -> bytes:
    return "".join(json.dumps({"messages": [{"role": "user", "content": f"q{i}"},
                                            {"role": "assistant", "content": answer}]}) + "\n"
                   for i in range(n)).encode()


def method(n_epochs: int) -> dict:
    return {"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": n_epochs, "batch_size": 5}}}


def wait(check, timeout: float = 120, every: float = 0.3):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = check()
        if value:
            return value
        time.sleep(every)
    raise AssertionError("timed out")


def worker_gone(run_id: str) -> bool:
    launch = paths.runs_dir() / run_id / "launch.json"
    return launch.exists() and not psutil.pid_exists(json.loads(launch.read_text())["pid"]) or _zombie(launch)


def _zombie(launch) -> bool:
    try:
        return psutil.Process(json.loads(launch.read_text())["pid"]).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_jobs_survive_restarts_cancel_at_once_and_bad_files_fail_alone(tiny_table, ftm_home):
    with serve(port=0, api_key=KEY, device="cpu") as server:
        c = openai.OpenAI(base_url=server.url, api_key=KEY, max_retries=0)
        huge = rows("ok")[:-1] + b"\n" + json.dumps({"messages": [{"role": "user", "content": "n"}]}).encode()[:-1] \
            + b', "n": ' + b"9" * 5000 + b"}\n"
        bad = c.fine_tuning.jobs.create(model=BASE, training_file=c.files.create(
            file=("huge.jsonl", huge), purpose="fine-tune").id)
        bad = wait(lambda: (j := c.fine_tuning.jobs.retrieve(bad.id)).status == "failed" and j)
        assert bad.error.code == "invalid_training_file" and "9999" not in bad.error.message
        assert [j.id for j in c.fine_tuning.jobs.list()][-1] == bad.id  # listing keeps working

        upload = c.files.create(file=("zz.jsonl", rows("zz")), purpose="fine-tune")
        doomed = c.fine_tuning.jobs.create(model=BASE, training_file=upload.id, method=method(50))
        cancelled = c.fine_tuning.jobs.cancel(doomed.id)
        assert cancelled.status == "cancelled" and cancelled.finished_at  # at once, as OpenAI answers
        with pytest.raises(openai.BadRequestError) as err:
            c.fine_tuning.jobs.cancel(doomed.id)
        assert "run-" not in err.value.message

        kept = c.fine_tuning.jobs.create(model=BASE, training_file=upload.id, method=method(3), suffix="kept")
        wait(lambda: c.fine_tuning.jobs.retrieve(kept.id).status == "running")
        run_id = server.state.run_ids[kept.id]
    # The server is down while the run ends; nobody runs `ftm sync`.
    wait(lambda: worker_gone(run_id))
    assert ftm("runs", "--json").json()[0]["status"] != "succeeded"
    time.sleep(2)  # so a finish stamped at the next read would show
    back_at = time.time()
    with serve(port=0, api_key=KEY, device="cpu") as again:
        c = openai.OpenAI(base_url=again.url, api_key=KEY, max_retries=0)
        ft = f"ft:{BASE}:ftm:kept:{run_id.removeprefix('run-')}"
        wait(lambda: ft in {m.id for m in c.models.list()}, timeout=30)  # registered by the server alone
        job = c.fine_tuning.jobs.retrieve(kept.id)
        assert job.status == "succeeded" and job.fine_tuned_model == ft
        assert job.finished_at < back_at - 1  # when the run really ended, not when it was next read
        assert c.fine_tuning.jobs.retrieve(doomed.id).status == "cancelled"
        assert c.files.retrieve(upload.id).bytes == len(rows("zz"))
        results = c.files.content(job.result_files[0]).content
        assert base64.b64decode(results).startswith(b"step,train_loss")  # base64, as the stand-in serves it
        checkpoints = c.fine_tuning.jobs.checkpoints.list(kept.id).data
        assert checkpoints and "train_mean_token_accuracy" in checkpoints[0].metrics.model_dump(exclude_none=True)
    runs = {r["id"]: r for r in ftm("runs", "--json").json()}
    assert runs[run_id]["status"] == "succeeded"
    zombies = [p for p in psutil.Process().children(recursive=True) if p.status() == psutil.STATUS_ZOMBIE]
    assert zombies == []


def test_every_local_model_is_served_and_a_rerun_answers_under_its_parents_name(tiny_table, ftm_home, tmp_path):
    data = tmp_path / "capitals.jsonl"
    data.write_bytes(rows("Paris"))
    with standin(speed=200) as hosted:
        env = {"OPENAI_BASE_URL": hosted.url, "OPENAI_API_KEY": "sk-standin"}
        parent = ftm("submit", data, "--backend", "openai", "--model", BASE, "--suffix", "capitals", "--wait",
                     "--json", env=env)
        assert parent.code == 0, parent
    parent = parent.json()
    parent_model = parent["result_model"]
    flags = [arg for k, v in OPTIONS.items() for arg in ("-p", f"{k}={v}")]
    first = ftm("rerun", parent["id"], "--backend", "local", "--model", tiny_table, "--epochs", "2",
                *flags, "--wait", "--json")
    assert first.code == 0, first
    local = first.json()["id"]
    with serve(port=0, api_key=KEY, device="cpu") as server:
        c = openai.OpenAI(base_url=server.url, api_key=KEY, max_retries=0)
        served = {m.id for m in c.models.list()}
        assert {parent_model, f"local:{local}"} <= served
        msgs = [{"role": "user", "content": "q1"}]
        by_parent = c.chat.completions.create(model=parent_model, messages=msgs, max_tokens=4)
        by_run = c.chat.completions.create(model=f"local:{local}", messages=msgs, max_tokens=4)
        assert by_parent.choices[0].message.content == by_run.choices[0].message.content
        checkpoint = ftm("show", local, "--json").json()["checkpoints"][0]["model_id"]
        step = c.chat.completions.create(model=checkpoint, messages=msgs, max_tokens=4)
        assert step.choices[0].finish_reason in ("stop", "length")
    aliases = [m for m in ftm("models", "--json").json() if m["kind"] == "alias"]
    assert [(m["model_id"], m["run_id"]) for m in aliases] == [(parent_model, local)]

    second = ftm("rerun", parent["id"], "--backend", "local", "--model", tiny_table, "--epochs", "1",
                 *flags, "--wait", "--json")
    assert second.code == 0, second
    with serve(port=0, api_key=KEY, device="cpu") as server:
        c = openai.OpenAI(base_url=server.url, api_key=KEY, max_retries=0)
        with pytest.raises(openai.BadRequestError) as err:
            c.chat.completions.create(model=parent_model, messages=[{"role": "user", "content": "q1"}])
        assert "--alias" in err.value.message and local in err.value.message
    bad = ftm("serve", "--alias", "no-equals-sign")
    assert bad.code == 1 and bad.err.startswith("Error: --alias") and len(bad.err.splitlines()) == 1
    from ftmanager.ledger import ledger

    ledger().set_model_alias(parent_model, local)
    with serve(port=0, api_key=KEY, device="cpu") as server:
        c = openai.OpenAI(base_url=server.url, api_key=KEY, max_retries=0)
        chosen = c.chat.completions.create(model=parent_model, messages=[{"role": "user", "content": "q1"}],
                                           max_tokens=4)
        assert chosen.choices[0].message.content == by_run.choices[0].message.content


@contextlib.contextmanager
def running_job(n_epochs: int):
    """ftm serve with one long job running: (server, client, job, its run id)."""
    with serve(port=0, api_key=KEY, device="cpu") as server:
        c = openai.OpenAI(base_url=server.url, api_key=KEY, max_retries=0)
        upload = c.files.create(file=("zz.jsonl", rows("zz", 20)), purpose="fine-tune")
        job = c.fine_tuning.jobs.create(model=BASE, training_file=upload.id, method=method(n_epochs))
        wait(lambda: c.fine_tuning.jobs.retrieve(job.id).status == "running")
        yield server, c, job, server.state.run_ids[job.id]


def test_pause_and_resume_agree_across_the_api_and_the_ledger(tiny_table, ftm_home):
    with running_job(40) as (server, c, job, run_id):
        assert c.fine_tuning.jobs.pause(job.id).status == "paused"
        assert ftm("show", run_id, "--json").json()["status"] == "paused"  # the run says so at once
        assert c.fine_tuning.jobs.retrieve(job.id).status == "paused"  # held while the worker ends its step
        wait(lambda: ftm("sync").code == 0 and ftm("show", run_id, "--json").json()["status"] == "paused")
        time.sleep(3)
        resumed = c.fine_tuning.jobs.resume(job.id)
        assert resumed.status in ("queued", "running")
        wait(lambda: c.fine_tuning.jobs.retrieve(job.id).status == "running")
        with pytest.raises(openai.BadRequestError) as err:
            c.fine_tuning.jobs.resume(job.id)
        assert "run-" not in err.value.message
        assert c.fine_tuning.jobs.cancel(job.id).status == "cancelled"
        assert ftm("show", run_id, "--json").json()["status"] == "cancelled"


def test_a_cancelled_job_is_cancelled_at_once_in_the_api_and_in_its_run(tiny_table, ftm_home):
    """A job is a view of its run: the moment the cancel is answered, the run says the same."""
    with running_job(50) as (server, c, job, run_id):
        cancelled = c.fine_tuning.jobs.cancel(job.id)
        run = ledger().run(run_id)  # read before anything could poll the worker again
        assert cancelled.status == "cancelled" and run["status"] == "cancelled"
        assert cancelled.finished_at == int(epoch(run["finished_at"]))
        shown = ftm("show", run_id, "--json").json()
        assert shown["status"] == "cancelled" and shown["finished_at"] == run["finished_at"]
        listed = [j for j in c.fine_tuning.jobs.list() if j.id == job.id]
        assert [(j.status, j.finished_at) for j in listed] == [("cancelled", cancelled.finished_at)]
        wait(lambda: worker_gone(run_id), timeout=60)  # the worker still stops ...
        assert c.fine_tuning.jobs.retrieve(job.id).status == "cancelled"
        pid = json.loads((paths.runs_dir() / run_id / "launch.json").read_text())["pid"]
        # ... and is reaped: the launcher collects its exit as it ends, so no <defunct> stays behind
        wait(lambda: not psutil.pid_exists(pid), timeout=10)
