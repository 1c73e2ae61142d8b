"""`ftm` as real processes against the Fireworks stand-in: submit, rerun, runs, compare, cancel,
and a submit killed mid-create that `ftm sync` finds again; the key is never written."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from conftest import assert_key_never_written, ftm, synced_after_kill
from sdk_backends import served
from ftmanager.standin import standin

KEY, ACCOUNT = "fw-e2e-" + "s3cr3t" * 4, "acme"
MODEL = "accounts/fireworks/models/llama-v3p1-8b-instruct"
JOBS = f"/accounts/{ACCOUNT}/supervisedFineTuningJobs"


server = served(standin, speed=20, provider="fireworks")


@pytest.fixture
def env(server, ftm_home, monkeypatch):
    monkeypatch.setenv("FIREWORKS_BASE_URL", server.url)
    monkeypatch.setenv("FIREWORKS_API_KEY", KEY)
    monkeypatch.setenv("FIREWORKS_ACCOUNT_ID", ACCOUNT)
    monkeypatch.setenv("FTM_POLL_SCALE", "0.05")
    server.faults.clear()
    server.service.speed = 20
    return server


def test_submit_rerun_runs_and_compare(env, chat_file, ftm_home):
    result = ftm("submit", chat_file, "--backend", "fireworks", "--epochs", "2", "--suffix", "demo",
                 "--lora-r", "16", "--wait", "--json")
    assert result.code == 0, result
    run = result.json()
    job = env.state.jobs[run["provider_job_id"]]
    assert run["status"] == "succeeded" and run["base_model"] == MODEL  # the backend's default model
    assert run["result_model"] == f"accounts/{ACCOUNT}/models/demo-{run['id']}"
    assert run["trained_tokens"] == job.trained_tokens and run["actual_cost"] == pytest.approx(job.trained_tokens * 0.5e-6)
    assert run["estimated_cost"] > 0 and run["resolved_hyperparameters"]["lora_r"] == 16
    shown = ftm("show", run["id"], "--json").json()
    states = [e["data"]["state"] for e in shown["events"] if (e["data"] or {}).get("state")]
    assert states[-1] == "JOB_STATE_COMPLETED" and all(s.startswith("JOB_STATE_") for s in states)
    again = ftm("rerun", run["id"], "--backend", "fireworks", "--lora-r", "32", "--wait", "--json")
    assert again.code == 0, again
    child = again.json()
    assert child["parent_run_id"] == run["id"] and child["base_model"] == MODEL
    assert env.service.requests[child["provider_job_id"]]["loraRank"] == 32
    assert env.service.requests[child["provider_job_id"]]["epochs"] == 2  # carried from the parent
    listed = ftm("runs", "--backend", "fireworks", "--json").json()
    assert [r["id"] for r in listed] == [child["id"], run["id"]]
    compared = ftm("compare", run["id"], child["id"], "--json")
    assert compared.code == 0, compared
    assert "lora_r" in compared.out and "JOB_STATE" not in compared.err
    assert len(env.service.datasets) == 1 or all(d.ready() for d in env.service.datasets.values())
    assert_key_never_written(KEY, ftm_home, result.out, result.err, again.out, again.err)


def test_killed_mid_create_then_sync_finds_the_one_job(env, chat_file, ftm_home):
    env.faults.add("slow", "POST", JOBS, delay=6)
    before = set(env.state.jobs)
    proc = subprocess.Popen([sys.executable, "-m", "ftmanager", "submit", chat_file, "--backend", "fireworks"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while set(env.state.jobs) == before:  # the provider has made the job ...
        assert time.time() < deadline and proc.poll() is None, proc.communicate()
        time.sleep(0.02)
    run = synced_after_kill(proc)  # ... and ftm dies before hearing of it
    assert set(env.state.jobs) - before == {run["provider_job_id"]} == {f"ftm-{run['id']}"}  # found, not made again
    assert "created by an interrupted start" in " ".join(e["message"] for e in run["events"])
    assert ftm("watch", run["id"]).code == 0


def test_cancel_a_fireworks_run(env, chat_file):
    env.service.speed = 2  # a few seconds in validation and the queue: long enough to cancel
    run = ftm("submit", chat_file, "--backend", "fireworks", "--json").json()
    cancelled = ftm("cancel", run["id"], "--json")
    assert cancelled.code == 0 and cancelled.json()["status"] == "cancelled", cancelled
    assert env.state.jobs[run["provider_job_id"]].status == "cancelled"
    assert ftm("watch", run["id"]).code == 4


def test_data_fireworks_would_refuse_is_refused_before_anything_is_sent(env, tmp_path, ftm_home):
    rows = [{"messages": [{"role": "user", "content": f"What is {i} squared?"},
                          {"role": "function", "name": "square", "content": str(i * i)},
                          {"role": "assistant", "content": str(i * i)}]} for i in range(12)]
    data = tmp_path / "calls.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    env.requests.clear()
    result = ftm("submit", data, "--backend", "fireworks")
    assert result.code == 1 and result.err.count("\n") == 1, result
    assert "has role 'function', which fireworks does not take" in result.err and "--provider fireworks" in result.err
    assert sum(env.requests.values()) == 0 and ftm("runs", "--json").json() == []
