"""Listing an OpenAI account's existing fine-tuning jobs through the hosted base: jobs made with
the plain openai SDK against the stand-in come back in ftm's records, every page of them, with
their requests, all their events and checkpoints, and a cursor to follow them on from."""

from __future__ import annotations

import json

import openai
import pytest
from sdk_backends import MODEL, aimed, chat_jsonl, openai_job_ended, served

from ftm_backends.openai import OpenAIBackend
from ftmanager.errors import BackendError, Refused
from ftmanager.standin import standin

KEY = "sk-list-" + "k3y" * 8
server = served(standin, speed=60)


@pytest.fixture
def env(server, monkeypatch):
    server.state.jobs.clear()  # each test lists an account of its own making
    return aimed(server, monkeypatch, {"OPENAI_BASE_URL": server.url, "OPENAI_API_KEY": KEY},
                 unset=("OPENAI_ORG_ID", "OPENAI_PROJECT_ID", "FTM_POLL_SCALE"))


def upload(client: openai.OpenAI, tmp_path, n: int, name: str) -> str:
    path = tmp_path / name
    path.write_text(chat_jsonl(n))
    with open(path, "rb") as fh:
        return client.files.create(file=fh, purpose="fine-tune").id


@pytest.fixture
def account(env, tmp_path):
    """Three jobs made by hand: a long one that succeeds, one with ftm's tag cancelled, one left queued."""
    client = openai.OpenAI(api_key=KEY, base_url=env.url)
    train, valid = upload(client, tmp_path, 12, "train.jsonl"), upload(client, tmp_path, 10, "valid.jsonl")
    hp = {"n_epochs": 10, "batch_size": 1, "learning_rate_multiplier": 0.5}
    done = client.fine_tuning.jobs.create(
        model=MODEL, training_file=train, validation_file=valid, suffix="mine", seed=7, metadata={"team": "a"},
        method={"type": "supervised", "supervised": {"hyperparameters": hp}})
    openai_job_ended(client, done.id)
    tagged = client.fine_tuning.jobs.create(model=MODEL, training_file=train, metadata={"ftm_run_id": "run-1a2b3c4d"})
    client.fine_tuning.jobs.cancel(tagged.id)
    waiting = client.fine_tuning.jobs.create(model=MODEL, training_file=train)
    return client, done.id, tagged.id, waiting.id, train, valid


def test_every_job_comes_back_newest_first_across_pages(account, env):
    client, done, tagged, waiting, train, valid = account
    env.requests.clear()
    jobs = OpenAIBackend().list_jobs(page=2)
    assert [j.job_id for j in jobs] == [waiting, tagged, done]
    assert env.requests[("GET", "/fine_tuning/jobs")] == 2  # two pages of two
    assert jobs[1].request.metadata == {"ftm_run_id": "run-1a2b3c4d"} and jobs[1].progress.status == "cancelled"
    assert jobs[0].progress.status in ("validating_files", "queued", "running")
    assert jobs[0].progress.finished_at is None and jobs[0].progress.result_model is None


def test_a_finished_job_has_its_request_and_everything_it_reported(account, env):
    client, done, _, _, train, valid = account
    [job] = [j for j in OpenAIBackend().list_jobs() if j.job_id == done]
    server_job = env.state.jobs[done]
    asked = {"n_epochs": 10, "batch_size": 1, "learning_rate_multiplier": 0.5}
    assert (job.request.base_model, job.request.method, job.request.hyperparameters) == (MODEL, "supervised", asked)
    assert (job.request.suffix, job.request.seed, job.request.metadata) == ("mine", 7, {"team": "a"})
    assert (job.request.training_file, job.request.validation_file) == (train, valid)
    assert job.created_at == server_job.created_at // 1
    p = job.progress
    assert len(server_job.events) > 100  # more than one page of events
    assert [e.id for e in p.events] == [e["id"] for e in server_job.events]  # all, oldest first
    assert [c.model_id for c in p.checkpoints] == [c["fine_tuned_model_checkpoint"] for c in server_job.checkpoints]
    assert [m["step"] for m in p.metrics if "train_loss" in m][-1] == 120  # 12 examples x 10 epochs
    assert p.hyperparameters == asked and p.result_model == server_job.fine_tuned_model
    assert p.trained_tokens == server_job.trained_tokens and p.actual_cost == pytest.approx(p.trained_tokens * 3.0 / 1e6)
    assert p.finished_at == int(server_job.finished_at) and p.error is None


def test_a_listed_job_is_followed_on_from_its_cursor(account, env):
    client, _, _, waiting, _, _ = account
    backend = OpenAIBackend()
    listed = backend.provider_job(waiting)
    seen = {e.id for e in listed.progress.events}
    openai_job_ended(client, waiting)
    later = backend.poll(waiting, json.loads(json.dumps(listed.progress.cursor)))
    assert later.status == "succeeded" and later.events and not seen & {e.id for e in later.events}
    assert [e.id for e in listed.progress.events + later.events] == [e["id"] for e in env.state.jobs[waiting].events]


def test_a_provider_that_stops_answering_mid_listing_is_one_line(account, env):
    env.faults.add("500", "GET", "/fine_tuning/jobs", times=10)
    with pytest.raises(BackendError) as caught:
        OpenAIBackend(max_retries=0).list_jobs(page=1)
    assert caught.value.what.startswith(f"OpenAI at {env.url} did not answer (InternalServerError")


def test_a_rejected_key_lists_nothing(account, env, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-wrong")
    env.faults.add("401", "GET", "/fine_tuning/jobs")
    with pytest.raises(Refused, match="OpenAI rejected the API key read from OPENAI_API_KEY"):
        OpenAIBackend().list_jobs()
