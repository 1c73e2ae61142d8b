"""`ftm import` against a hostile provider and careless input: each gets one line, exit code 1,
and nothing half-written; what was adopted before a failure stays, and a second run completes it."""

from __future__ import annotations

import os
import time

import openai
import pytest
from conftest import assert_key_never_written, ftm
from sdk_backends import MODEL, aimed, chat_jsonl, served

from ftmanager import adopting, jobs
from ftmanager.errors import BackendError, FtmError
from ftmanager.front.state import ApiError
from ftmanager.ledger import ledger
from ftmanager.standin import standin

KEY = "sk-doors-" + "k3y" * 8
server = served(standin, speed=200)


@pytest.fixture
def env(server, monkeypatch, ftm_home):
    server.state.jobs.clear()
    return aimed(server, monkeypatch, {"OPENAI_BASE_URL": server.url, "OPENAI_API_KEY": KEY},
                 unset=("OPENAI_ORG_ID", "OPENAI_PROJECT_ID", "FTM_POLL_SCALE"))


@pytest.fixture
def client(env):
    return openai.OpenAI(api_key=KEY, base_url=env.url)


def made(client, tmp_path, n_jobs: int = 1, name: str = "train.jsonl") -> tuple[str, list[str]]:
    path = tmp_path / name
    path.write_text(chat_jsonl(12))
    with open(path, "rb") as fh:
        file_id = client.files.create(file=fh, purpose="fine-tune").id
    return file_id, [client.fine_tuning.jobs.create(model=MODEL, training_file=file_id).id for _ in range(n_jobs)]


def one_line(result, text: str) -> None:
    assert result.code == 1 and result.out == "", result
    assert result.err == f"Error: {text}\n", result


def test_no_key_and_a_rejected_key(env, monkeypatch, client, tmp_path):
    made(client, tmp_path)
    monkeypatch.delenv("OPENAI_API_KEY")
    one_line(ftm("import", "openai"), "no OpenAI API key: OPENAI_API_KEY is not set. "
             "Set OPENAI_API_KEY, or run `ftm standin` and point OPENAI_BASE_URL at it.")
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    env.faults.add("401", "GET", "/fine_tuning/jobs")
    one_line(ftm("import", "openai"), f"OpenAI rejected the API key read from OPENAI_API_KEY (401 at {env.url}). "
             "Check the key in OPENAI_API_KEY (and OPENAI_ORG_ID / OPENAI_PROJECT_ID).")
    assert ledger().runs() == []


def test_a_key_without_permission_to_read_jobs(env, client, tmp_path, ftm_home):
    made(client, tmp_path)
    env.faults.add("403", "GET", "/fine_tuning/jobs")
    result = ftm("import", "openai")
    assert result.code == 1 and result.err.startswith("Error: OpenAI denied permission (403): ")
    assert result.err.count("\n") == 1 and ledger().runs() == []
    assert_key_never_written(KEY, ftm_home, result.out, result.err)


def test_a_job_that_does_not_exist(env):
    one_line(ftm("import", "openai", "--job", "ftjob-nope"),
             f"openai has no fine-tuning job 'ftjob-nope' in account {env.url} org=- project=-. "
             "Check the id: `ftm import openai --dry-run` lists the account's jobs.")


def test_a_provider_that_429s_mid_listing_loses_nothing(env, client, tmp_path):
    _, made_jobs = made(client, tmp_path, n_jobs=3)
    from ftmanager.front.openai import routes

    refusals = {"left": 9}

    def second_page_refused(srv, req):  # the first page answers; every later one is rate limited
        if req.arg("after") and refusals["left"] > 0:
            refusals["left"] -= 1
            raise ApiError(429, "Rate limit reached for requests.", code="rate_limit_exceeded", retry_after=0.01)
        return routes.list_jobs(srv, req)

    original = env.routes
    env.routes = [(m, p, second_page_refused if fn is routes.list_jobs else fn, lock) for m, p, fn, lock in original]
    try:
        with pytest.raises(BackendError, match=f"OpenAI at {env.url} did not answer \\(RateLimitError"):
            adopting.import_history("openai", page=1)
        assert [r["provider_job_id"] for r in ledger().runs()] == [made_jobs[-1]]  # the newest, whole
        refusals["left"] = 0
        again = adopting.import_history("openai", page=1)
    finally:
        env.routes = original
    assert again.already == [made_jobs[-1]] and len(again.adopted) == 2
    assert sorted(r["provider_job_id"] for r in ledger().runs()) == sorted(made_jobs)


def test_a_local_copy_that_fits_by_name_and_size_but_is_not_data(env, client, tmp_path):
    file_id, _ = made(client, tmp_path)
    env.faults.add("no_download", "GET", f"/files/{file_id}/content", times=10)
    fake = tmp_path / "copies" / "train.jsonl"
    fake.parent.mkdir()
    fake.write_bytes(b"x" * (tmp_path / "train.jsonl").stat().st_size)
    result = ftm("import", "openai", "--data", fake.parent)
    assert result.code == 1 and result.err.startswith(f"Error: {fake} has {file_id}'s name and size (")
    assert "but is not valid data (" in result.err and result.err.count("\n") == 1
    assert ledger().runs() == [] and ledger().datasets() == []


def test_a_filename_that_was_not_utf8_prints_and_still_matches(env, client, tmp_path):
    file_id, [job_id] = made(client, tmp_path)
    odd = "tr\udcffin.jsonl"  # the byte 0xff as Python reads it from a name that is not UTF-8
    env.state.files[file_id].filename = odd
    env.faults.add("no_download", "GET", f"/files/{file_id}/content", times=10)
    first = ftm("import", "openai")
    assert first.code == 0, first
    assert f"training file {file_id} (tr\ufffdin.jsonl, " in first.out
    folder = tmp_path / "copies"
    folder.mkdir()
    with open(os.path.join(os.fsencode(folder), b"tr\xffin.jsonl"), "wb") as fh:
        fh.write((tmp_path / "train.jsonl").read_bytes())
    second = ftm("import", "openai", "--data", folder)
    assert second.code == 0 and "Data: 0 file(s) downloaded, 1 matched to local copies." in second.out, second
    assert ledger().dataset(jobs.show(job_id)["dataset_id"])["n_examples"] == 12


def test_a_base_model_no_table_row_maps_imports_but_does_not_rerun(env, client, tmp_path):
    _, [job_id] = made(client, tmp_path)
    env.state.jobs[job_id].model = "babbage-002"
    adopting.import_history("openai")
    run = jobs.show(job_id)
    assert run["base_model"] == "babbage-002"
    with pytest.raises(FtmError, match="babbage-002 \\(openai\\) is in no row of the base-model table"):
        jobs.rerun(run["id"], "together")
    assert len(ledger().runs()) == 1


def test_a_backend_that_cannot_list_and_bad_flags(env, tmp_path):
    one_line(ftm("import", "local"), "the local backend cannot list its provider's jobs. "
             "Start runs with `ftm submit`; only backends that list their jobs can import them.")
    one_line(ftm("import", "openai", "--since", "last tuesday"),
             "--since 'last tuesday' is not a date. Give one like 2025-06-01 or 2025-06-01T12:00.")
    one_line(ftm("import", "openai", "--data", tmp_path / "nowhere"),
             f"--data {tmp_path / 'nowhere'}: no such file or folder. Give files or folders that exist.")
    assert not (tmp_path / "ftm-home" / "ftm.db").exists() or ledger().runs() == []


def test_a_killed_import_then_a_second_completes_without_duplicates(env, client, tmp_path):
    import signal
    import subprocess
    import sys

    from ftmanager.standin.history import seed

    made = seed(env, {"files": [{"name": "t", "filename": "t.jsonl", "text": chat_jsonl(12)}],
                      "jobs": [{"training_file": "t", "events": 150, "repeat": 12}]})
    from ftmanager.front.openai import routes

    def slow_events(srv, req):  # a provider far away: each page of events takes a while
        time.sleep(0.1)
        return routes.list_events(srv, req)

    original = env.routes
    env.routes = [(m, p, slow_events if fn is routes.list_events else fn, lock) for m, p, fn, lock in original]
    try:
        proc = subprocess.Popen([sys.executable, "-m", "ftmanager", "import", "openai"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 60
        while len(ledger().runs()) < 3:
            assert time.time() < deadline and proc.poll() is None
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    finally:
        env.routes = original
    partial = len(ledger().runs())
    assert 3 <= partial < 12  # killed part-way
    again = adopting.import_history("openai")
    assert len(again.already) == partial and len(again.adopted) == 12 - partial
    for job_id in made:  # each job once, each with every event
        run = jobs.show(job_id)
        assert len(run["events"]) == 150 and len([r for r in ledger().runs() if r["provider_job_id"] == job_id]) == 1
