"""A flaky or refusing provider: the stand-in injects the fault, the real SDK meets it.

The rule under test: start() raises Refused only when OpenAI definitely refused;
every ambiguous failure propagates as another exception, and exactly one job exists after
any of them (the create POST is never retried blindly).
"""

from __future__ import annotations

import socket
import time

import openai
import pytest
import sdk_backends as kit
from sdk_backends import MemoryUploads, make_spec

from ftm_backends.openai import OpenAIBackend
from ftmanager import registry
from ftmanager.standin import standin
from ftmanager.errors import Refused
from test_openai_backend import KEY, env, jobs_tagged, server  # noqa: F401

CREATE = ("POST", "/fine_tuning/jobs")
OPENAI = kit.Hosted(OpenAIBackend, openai.InternalServerError, CREATE, jobs_tagged)


@kit.each_create_fault(kit.lost_answer_leaves_one_job, kit.server_errors_are_retried_without_duplicates,
                       kit.failing_create_is_no_refusal)
def test_one_job_per_run_whatever_happens_to_the_create(env, tmp_path, check):
    check(OPENAI, env, make_spec(tmp_path))  # a job is found by its metadata


def test_a_create_slower_than_the_timeout_leaves_one_job(env, tmp_path):
    spec = make_spec(tmp_path)
    env.faults.add("slow", *CREATE, delay=1.5)
    job_id = OpenAIBackend(timeout=0.4).start(spec, MemoryUploads())
    assert jobs_tagged(env, spec.run_id) == [job_id]


def test_rate_limits_honour_retry_after_on_create_and_on_polls(env, tmp_path):
    spec = make_spec(tmp_path)
    backend = OpenAIBackend()
    env.faults.add("429", *CREATE, retry_after=1.0)
    began = time.monotonic()
    job_id = backend.start(spec, MemoryUploads())
    assert time.monotonic() - began >= 1.0  # the SDK's own backoff would be 0.5 s at most
    assert env.requests[CREATE] == 2 and jobs_tagged(env, spec.run_id) == [job_id]
    env.faults.add("429", "GET", f"/fine_tuning/jobs/{job_id}", retry_after=1.0)
    began = time.monotonic()
    assert backend.poll(job_id, {}).status  # retried by the SDK itself
    assert time.monotonic() - began >= 1.0
    assert env.requests[("GET", f"/fine_tuning/jobs/{job_id}")] == 2


def test_a_dropped_poll_is_retried_and_loses_nothing(env, tmp_path):
    job_id, progresses = kit.followed_through(env, OpenAIBackend(), make_spec(tmp_path),
                                              ("drop", "GET", "/fine_tuning/jobs/{id}/events"),
                                              ("500", "GET", "/fine_tuning/jobs/{id}"))
    assert [e.id for p in progresses for e in p.events] == [e["id"] for e in env.state.jobs[job_id].events]


def test_403_on_create_names_the_way_out(env, tmp_path):
    spec = make_spec(tmp_path)
    env.faults.add("403")  # OpenAI's answer now: code training_not_available
    with pytest.raises(Refused) as caught:
        OpenAIBackend().start(spec, MemoryUploads())
    line = caught.value.line()
    assert "no longer creates fine-tuning jobs for this organization (403 training_not_available)" in line
    assert "OpenAI is winding down the fine-tuning platform" in line  # the provider's own words
    for place in ("together", "fireworks", "azure", "local"):
        if place in registry.names():  # each place installed here is named with its command
            assert f"`ftm rerun {spec.run_id} --backend {place}`" in line
    assert "--backend fireworks`" in line and line.endswith("--backend local`.")


def test_400_gives_the_providers_message_and_param(env, tmp_path):
    spec = make_spec(tmp_path, base_model="gpt-2")
    with pytest.raises(Refused, match=r"gpt-2 is not available.*\(param: model\)"):
        OpenAIBackend().start(spec, MemoryUploads())


def test_401_names_where_the_key_came_from_and_never_the_key(tmp_path, monkeypatch):
    with standin(api_key="sk-the-right-one") as srv:
        monkeypatch.setenv("OPENAI_BASE_URL", srv.url)
        monkeypatch.setenv("OPENAI_API_KEY", KEY)
        with pytest.raises(Refused) as caught:
            OpenAIBackend().start(make_spec(tmp_path), MemoryUploads())
    line = caught.value.line()
    assert "OPENAI_API_KEY" in line and "401" in line
    assert KEY not in line and KEY[-4:] not in line and "sk-" not in line


def test_no_key_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(Refused, match="OPENAI_API_KEY is not set"):
        OpenAIBackend().start(make_spec(tmp_path), MemoryUploads())


def test_an_unreachable_provider_is_not_a_refusal(monkeypatch, tmp_path):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("OPENAI_BASE_URL", f"http://127.0.0.1:{port}/v1")
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    with pytest.raises(openai.APIConnectionError):
        OpenAIBackend(max_retries=0).start(make_spec(tmp_path), MemoryUploads())


def test_user_info_in_the_base_url_is_never_printed_or_kept(tmp_path, monkeypatch):
    with standin(api_key="sk-the-right-one") as srv:
        monkeypatch.setenv("OPENAI_BASE_URL", srv.url.replace("://", "://alice:pa55word@"))
        monkeypatch.setenv("OPENAI_API_KEY", KEY)
        backend = OpenAIBackend()
        with pytest.raises(Refused) as caught:
            backend.start(make_spec(tmp_path), MemoryUploads())
    assert "401 at http://127.0.0.1:" in caught.value.line()
    for text in (caught.value.line(), backend.account, backend.where):
        assert "pa55word" not in text and "alice" not in text


def test_find_pages_through_the_jobs_listed_by_metadata(env, tmp_path):
    spec = make_spec(tmp_path)
    backend = OpenAIBackend()
    ours = backend.start(spec, MemoryUploads())
    uploads = MemoryUploads()
    for _ in range(101):  # newer jobs of other runs, all tagged: ours ends up on the second page
        backend.start(make_spec(tmp_path), uploads)
    env.requests.clear()
    original = env.routes
    try:  # a server that ignores the metadata filter: find() must filter (and page) itself
        from ftmanager.front.openai import routes

        def ignore_filter(srv, req):
            req.query = {k: v for k, v in req.query.items() if not k.startswith("metadata[")}
            return routes.list_jobs(srv, req)

        env.routes = [(m, p, ignore_filter if fn is routes.list_jobs else fn, lock) for m, p, fn, lock in original]
        assert backend.find(spec.run_id) == ours
    finally:
        env.routes = original
    assert env.requests[("GET", "/fine_tuning/jobs")] == 2
    assert backend.find("run-never-started") is None
