"""`ftm` as real processes against the stand-in: submit, crash, recover, and never leak the key."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import assert_key_never_written, ftm, synced_after_kill
from sdk_backends import served
from ftmanager.standin import standin

KEY = "sk-test-e2e-" + "s3cr3t" * 4
MODEL = "gpt-4o-mini-2024-07-18"


server = served(standin, speed=20)


@pytest.fixture
def env(server, ftm_home, monkeypatch):
    monkeypatch.setenv("OPENAI_BASE_URL", server.url)
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.setenv("FTM_POLL_SCALE", "0.05")
    server.faults.clear()
    server.service.speed = 20
    return server


def tagged(server, run_id: str) -> list[str]:
    return [j.id for j in server.state.jobs.values() if (j.metadata or {}).get("ftm_run_id") == run_id]


def provider_events(run_id: str) -> list[str]:
    shown = ftm("show", run_id, "--json").json()
    return [e["provider_event_id"] for e in shown["events"] if e["provider_event_id"].startswith("ftevent-")]


def spawn(*args) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "ftmanager", *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_until(condition, timeout=20.0):
    deadline = time.time() + timeout
    while not condition():
        assert time.time() < deadline, "timed out"
        time.sleep(0.02)


def test_submit_wait_records_the_whole_job(env, chat_file, ftm_home):
    result = ftm("submit", chat_file, "--backend", "openai", "--model", MODEL, "--epochs", "2",
                 "--suffix", "demo", "--wait", "--json")
    assert result.code == 0, result
    run = result.json()
    assert run["status"] == "succeeded" and run["result_model"].startswith(f"ft:{MODEL}:ftm-standin:demo:")
    assert tagged(env, run["id"]) == [run["provider_job_id"]]
    job = env.state.jobs[run["provider_job_id"]]
    shown = ftm("show", run["id"], "--json").json()
    assert provider_events(run["id"]) == [e["id"] for e in job.events]
    assert [m["step"] for m in shown["metrics"]] == list(range(1, 25))
    assert {c["model_id"] for c in shown["checkpoints"]} == {c["fine_tuned_model_checkpoint"] for c in job.checkpoints}
    assert shown["trained_tokens"] == job.trained_tokens
    assert shown["actual_cost"] == pytest.approx(job.trained_tokens * 3.0 / 1e6)
    models = {m["model_id"] for m in ftm("models", "--json").json()}
    assert run["result_model"] in models
    assert_key_never_written(KEY, ftm_home, result.out, result.err)


def test_killed_mid_create_then_sync_finds_the_one_job(env, chat_file, ftm_home):
    env.faults.add("slow", "POST", "/fine_tuning/jobs", delay=30)
    before = len(env.state.jobs)
    proc = spawn("submit", chat_file, "--backend", "openai", "--model", MODEL, "--epochs", "2")
    wait_until(lambda: len(env.state.jobs) > before)  # the provider has made the job ...
    run = synced_after_kill(proc)  # ... and ftm dies before hearing of it
    assert tagged(env, run["id"]) == [run["provider_job_id"]]  # found, not created again
    assert ftm("watch", run["id"]).code == 0
    assert len(env.state.jobs) == before + 1


def test_submit_wait_killed_while_polling_then_watch_records_everything(env, chat_file, ftm_home):
    env.service.speed = 4  # slow enough to be caught running
    proc = spawn("submit", chat_file, "--backend", "openai", "--model", MODEL, "--epochs", "2", "--wait")
    wait_until(lambda: any(j.status == "running" for j in env.state.jobs.values()
                           if (j.metadata or {}).get("ftm_run_id") and j.finished_at is None))
    proc.send_signal(signal.SIGKILL)
    out, err = proc.communicate()
    [run] = ftm("runs", "--json").json()
    assert run["status"] != "succeeded"
    env.service.speed = 40
    watched = ftm("watch", run["id"])
    assert watched.code == 0, watched
    job = env.state.jobs[run["provider_job_id"]]
    assert provider_events(run["id"]) == [e["id"] for e in job.events]
    assert ftm("show", run["id"], "--json").json()["result_model"] == job.fine_tuned_model
    assert_key_never_written(KEY, ftm_home, out, err, watched.out, watched.err)


def test_pause_resume_and_cancel_an_openai_run(env, chat_file, ftm_home):
    run = ftm("submit", chat_file, "--backend", "openai", "--model", MODEL, "--epochs", "5", "--json").json()
    job = env.state.jobs[run["provider_job_id"]]

    def running():
        with env.state.lock:
            env.service.refresh(job)
            if job.status == "running":
                env.service.speed = 0.5  # from here on, slow enough for ftm to catch it running
            return job.status == "running"

    wait_until(running)
    paused = ftm("pause", run["id"], "--json")
    assert paused.code == 0 and paused.json()["status"] == "paused", paused
    resumed = ftm("resume", run["id"], "--json")
    assert resumed.code == 0 and resumed.json()["status"] == "queued", resumed
    cancelled = ftm("cancel", run["id"], "--json")
    assert cancelled.code == 0 and cancelled.json()["status"] == "cancelled", cancelled
    assert job.status == "cancelled" and ftm("watch", run["id"]).code == 4


def test_403_on_create_fails_the_run_with_the_way_out(env, chat_file, ftm_home):
    env.faults.add("403")
    result = ftm("submit", chat_file, "--backend", "openai", "--model", MODEL)
    assert result.code == 1
    [line] = result.err.strip().splitlines()
    [run] = ftm("runs", "--json").json()
    assert line.startswith("Error: ") and "(403 training_not_available)" in line
    assert f"`ftm rerun {run['id']} --backend fireworks`" in line and line.endswith(f"`ftm rerun {run['id']} --backend local`.")
    assert run["status"] == "failed"
    assert_key_never_written(KEY, ftm_home, result.out, result.err)


def test_a_wrong_key_is_one_line_naming_the_variable(env, chat_file, ftm_home, monkeypatch):
    env.api_key = "sk-the-right-one"
    try:
        result = ftm("submit", chat_file, "--backend", "openai", "--model", MODEL)
    finally:
        env.api_key = None
    assert result.code == 1 and "OPENAI_API_KEY" in result.err and "Traceback" not in result.err
    assert_key_never_written(KEY, ftm_home, result.out, result.err)
    assert os.environ["OPENAI_API_KEY"] == KEY


def test_concurrent_starts_upload_the_dataset_once_per_account(env, tmp_path, ftm_home):
    from concurrent.futures import ThreadPoolExecutor

    from ftm_backends.openai import OpenAIBackend
    from ftmanager.jobs import _Uploads
    from ftmanager.ledger import ledger
    from sdk_backends import make_spec

    specs = [make_spec(tmp_path) for _ in range(4)]  # one content, four runs
    ledger().add_dataset({"id": specs[0].dataset_id, "name": "same"})
    before = env.requests[("POST", "/files")]
    with ThreadPoolExecutor(4) as pool:  # the lock is a file lock: threads contend as processes do
        jobs = list(pool.map(lambda spec: OpenAIBackend().start(spec, _Uploads("openai")), specs))
    assert len(set(jobs)) == 4 and env.requests[("POST", "/files")] == before + 1
    assert len(ledger().uploads_of(specs[0].dataset_id)) == 1


def test_a_password_in_the_base_url_reaches_no_output_and_no_ledger_row(env, chat_file, ftm_home, monkeypatch):
    import sqlite3

    # httpx sends user info as Basic auth in place of the key: the stand-in answers 401
    monkeypatch.setenv("OPENAI_BASE_URL", env.url.replace("://", "://alice:pa55word@"))
    refused = ftm("submit", chat_file, "--backend", "openai", "--model", MODEL)
    assert refused.code == 1 and "401 at http://127.0.0.1:" in refused.err, refused
    shown = ftm("show", ftm("runs", "--json").json()[0]["id"])
    conn = sqlite3.connect(ftm_home / "ftm.db")
    rows = conn.execute("SELECT error_message FROM runs").fetchall() + conn.execute(
        "SELECT message, data FROM events").fetchall()
    assert "401" in str(rows)
    for text in [refused.out, refused.err, shown.out, *map(str, rows)]:
        assert "pa55word" not in text and "alice" not in text, text


def test_sync_and_watch_say_in_one_line_when_openai_does_not_answer(env, chat_file, ftm_home, monkeypatch):
    import socket

    run = ftm("submit", chat_file, "--backend", "openai", "--model", MODEL, "--json").json()
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        monkeypatch.setenv("OPENAI_BASE_URL", f"http://127.0.0.1:{s.getsockname()[1]}/v1")
    synced, watched = ftm("sync"), ftm("watch", run["id"])
    for result, said in ((synced, synced.out), (watched, watched.err)):
        assert result.code == 1 and "Traceback" not in result.err, result
        assert "did not answer (APIConnectionError" in said and len(said.strip().splitlines()) == 1, result
    assert synced.out.startswith(f"{run['id']}  openai  ")
    monkeypatch.setenv("OPENAI_BASE_URL", env.url)
    assert ftm("watch", run["id"]).code == 0  # nothing was lost
