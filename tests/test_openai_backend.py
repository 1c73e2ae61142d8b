"""The OpenAI backend through the real openai SDK against the stand-in server over loopback."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from sdk_backends import MODEL, MemoryUploads, aimed, follow, make_spec, served

from ftm_backends.openai import OpenAIBackend, parse_results
from ftmanager.front.openai import ROUTES
from ftmanager.standin import ClockService, Server, standin
from ftmanager.backend import RunSpec
from ftmanager.errors import BackendError

KEY = "sk-test-" + "k3y" * 8
OPENAI_ORDER = ["Created fine-tuning job", "Validating training file", "Files validated, moving job to queued state",
                "Fine-tuning job started", "Step 1/", "New fine-tuned model created", "The job has successfully completed"]


server = served(standin, speed=40)


@pytest.fixture
def env(server, monkeypatch):
    """The SDK's environment pointing at the stand-in; faults and counts reset."""
    return aimed(server, monkeypatch, {"OPENAI_BASE_URL": server.url, "OPENAI_API_KEY": KEY},
                 unset=("OPENAI_ORG_ID", "OPENAI_PROJECT_ID", "FTM_POLL_SCALE"))


def jobs_tagged(server, run_id: str) -> list[str]:
    return [j.id for j in server.state.jobs.values() if (j.metadata or {}).get("ftm_run_id") == run_id]


@pytest.mark.parametrize("encoding", ["never", "always"])
def test_a_job_is_followed_to_its_model_with_everything_recorded(env, tmp_path, encoding):
    env.service.results_base64 = encoding
    spec = make_spec(tmp_path, validation=10)
    backend = OpenAIBackend()
    job_id = backend.start(spec, MemoryUploads())
    progresses = follow(backend, job_id)
    events = [e for p in progresses for e in p.events]
    server_job = env.state.jobs[job_id]
    assert [e.id for e in events] == [e["id"] for e in server_job.events]  # all of them, once, in order
    messages = [e.message for e in events]
    positions = [next(i for i, m in enumerate(messages) if m.startswith(want)) for want in OPENAI_ORDER]
    assert positions == sorted(positions)
    statuses = [p.status for p in progresses]
    # at speed 40 a loaded machine may first see it running already
    assert statuses[0] in ("validating_files", "queued", "running") and statuses[-1] == "succeeded"

    last = progresses[-1]
    assert last.result_model == server_job.fine_tuned_model and last.result_model.startswith(f"ft:{MODEL}:")
    assert last.hyperparameters == {"n_epochs": 2, "batch_size": 1, "learning_rate_multiplier": 1.8}
    assert last.trained_tokens == server_job.trained_tokens > 0
    assert last.actual_cost == pytest.approx(last.trained_tokens * 3.0 / 1e6)  # gpt-4o-mini: 3 USD / 1M
    assert last.error is None and last.total_steps == 24
    assert last.finished_at == backend.client.fine_tuning.jobs.retrieve(job_id).finished_at
    assert [p.finished_at for p in progresses[:-1]] == [None] * (len(progresses) - 1)

    by_step = {}
    for p in progresses:
        for m in p.metrics:
            by_step.setdefault(m["step"], {}).update(m)
    assert sorted(by_step) == list(range(1, 25))
    losses = [by_step[s]["train_loss"] for s in range(1, 25)]
    assert losses == sorted(losses, reverse=True)
    assert all({"train_accuracy", "valid_loss", "valid_mean_token_accuracy"} <= set(m) for m in by_step.values())
    csv_rows = last.metrics  # the results file, read once the job succeeded
    assert [m["step"] for m in csv_rows][-24:] == list(range(1, 25))

    checkpoints = [c for p in progresses for c in p.checkpoints]
    assert [c.step for c in checkpoints] == [12, 24]
    assert all(re.fullmatch(rf"{re.escape(last.result_model)}:ckpt-step-{c.step}", c.model_id) for c in checkpoints)
    assert checkpoints[-1].metrics["full_valid_loss"] > 0
    assert backend.poll(job_id, last.cursor).events == []  # nothing new is reported twice


def test_events_beyond_one_page_arrive_once_and_in_order(env, tmp_path):
    spec = make_spec(tmp_path, n=40, hyperparameters={"n_epochs": 3})  # 120 steps: > 100 events a page
    backend = OpenAIBackend()
    job_id = backend.start(spec, MemoryUploads())
    job = env.state.jobs[job_id]
    while job.status != "succeeded":  # let it finish unobserved, as if ftm had been away
        time.sleep(0.1)
        with env.state.lock:
            env.service.refresh(job)
    env.requests.clear()
    progress = backend.poll(job_id, {})
    assert [e.id for e in progress.events] == [e["id"] for e in env.state.jobs[job_id].events]
    assert len(progress.events) > 120
    assert env.requests[("GET", f"/fine_tuning/jobs/{job_id}/events")] == 2  # paged with `after`
    assert sorted(m["step"] for m in progress.metrics if "train_loss" in m)[-1] == 120


def test_a_cursor_whose_last_event_vanished_still_reports_each_event_once(env, tmp_path):
    backend = OpenAIBackend()
    job_id = backend.start(make_spec(tmp_path), MemoryUploads())
    first = backend.poll(job_id, {})
    cursor = {**first.cursor, "last_event_id": "ftevent-gone"}  # e.g. the provider pruned it
    later = [e.id for p in follow(backend, job_id, cursor=cursor) for e in p.events]
    assert [e.id for e in first.events] + later == [e["id"] for e in env.state.jobs[job_id].events]


def test_a_dataset_is_uploaded_once_per_account(env, tmp_path, monkeypatch):
    spec, uploads = make_spec(tmp_path), MemoryUploads()
    backend = OpenAIBackend()
    backend.start(spec, uploads)
    backend.start(make_spec(tmp_path), uploads)  # same content, new run
    assert env.requests[("POST", "/files")] == 1
    file_id = uploads.get(spec.dataset_id, backend.account)
    backend.client.files.delete(file_id)  # gone on the provider's side: upload again
    backend.start(spec, uploads)
    assert env.requests[("POST", "/files")] == 2
    assert uploads.get(spec.dataset_id, backend.account) not in (None, file_id)
    monkeypatch.setenv("OPENAI_PROJECT_ID", "proj_other")  # another account
    other = OpenAIBackend()
    other.start(spec, uploads)
    assert env.requests[("POST", "/files")] == 3
    assert KEY not in other.account and "proj_other" in other.account


def test_large_files_go_through_the_uploads_api_in_parts(env, tmp_path):
    spec = make_spec(tmp_path, n=40)
    size = spec.training_file.stat().st_size
    backend = OpenAIBackend(multipart_threshold=1000, part_size=1024)
    uploads = MemoryUploads()
    env.faults.add("500", "POST", "/uploads/*/parts")  # the SDK re-sends the part from its start
    job_id = backend.start(spec, uploads)
    assert env.requests[("POST", "/files")] == 0 and env.requests[("POST", "/uploads")] == 1
    parts = sum(n for (m, p), n in env.requests.items() if p.endswith("/parts"))
    assert parts == -(-size // 1024) + 1 > 3
    stored = env.state.files[uploads.get(spec.dataset_id, backend.account)]
    assert stored.path.read_bytes() == spec.training_file.read_bytes()
    assert follow(backend, job_id)[-1].status == "succeeded"


def test_an_upload_that_fails_midway_is_cancelled(env, tmp_path):
    import openai

    spec = make_spec(tmp_path, n=40)
    env.faults.add("503", "POST", "/uploads/*/parts", times=3)
    before = set(env.state.uploads)
    with pytest.raises(openai.InternalServerError):
        OpenAIBackend(multipart_threshold=1000, part_size=1024).start(spec, MemoryUploads())
    [upload] = [u for k, u in env.state.uploads.items() if k not in before]
    assert upload.status == "cancelled" and not upload.parts


def test_pause_resume_and_cancel(env, tmp_path):
    backend = OpenAIBackend()
    job_id = backend.start(make_spec(tmp_path, n=40), MemoryUploads())
    while env.state.jobs[job_id].status != "running":
        time.sleep(0.02)
        backend.poll(job_id, {})
    backend.pause(job_id)
    paused = backend.poll(job_id, {})
    assert paused.status == "paused"  # not in the SDK's Literal, kept verbatim
    assert backend.poll_interval("paused", None) == 30.0
    step = env.state.jobs[job_id].events[-1]
    time.sleep(0.2)
    assert env.state.jobs[job_id].events[-1] == step  # the clock stopped
    assert backend.resume(job_id, None) is None
    assert backend.poll(job_id, {}).status == "queued"
    backend.cancel(job_id)
    assert backend.poll(job_id, {}).status == "cancelled"
    with pytest.raises(BackendError, match="already been cancelled"):
        backend.cancel(job_id)


def test_a_failed_job_reports_the_providers_error(env, tmp_path):
    backend = OpenAIBackend()
    job_id = backend.start(make_spec(tmp_path, n=3), MemoryUploads())
    last = follow(backend, job_id)[-1]
    assert last.status == "failed"
    assert last.error["code"] == "invalid_n_examples" and "at least 10" in last.error["message"]
    assert last.error["param"] == "training_file"


def test_an_empty_error_object_means_no_error(env, tmp_path):
    env.faults.add("empty_error")
    backend = OpenAIBackend()
    job_id = backend.start(make_spec(tmp_path), MemoryUploads())
    assert env.state.jobs[job_id].error == {}
    progresses = follow(backend, job_id)
    assert progresses[-1].status == "succeeded" and all(p.error is None for p in progresses)


class NewStatusRunner(ClockService):
    """A provider that has invented a status ftm has never seen."""

    def start(self, job):
        super().start(job)
        job.status = "migrating_region"
        self._sims.pop(job.id)


def test_an_unknown_status_is_kept_verbatim(tmp_path, monkeypatch):
    with Server(NewStatusRunner(), routes=ROUTES) as srv:
        monkeypatch.setenv("OPENAI_BASE_URL", srv.url)
        monkeypatch.setenv("OPENAI_API_KEY", KEY)
        backend = OpenAIBackend()
        job_id = backend.start(make_spec(tmp_path), MemoryUploads())
        progress = backend.poll(job_id, {})
    assert progress.status == "migrating_region"
    assert len(progress.events) == 2 and progress.error is None
    assert 0 < backend.poll_interval("migrating_region", None) <= 10


def test_polling_backs_off_while_waiting_and_is_quick_while_running(monkeypatch):
    backend = OpenAIBackend()
    waits, last = [], None
    for _ in range(6):
        last = backend.poll_interval("queued", last)
        waits.append(last)
    assert waits == [2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    assert backend.poll_interval("running", 30.0) == 1.5
    assert backend.poll_interval("succeeded", 2.0) == 0
    monkeypatch.setenv("FTM_POLL_SCALE", "0.01")
    assert backend.poll_interval("queued", backend.poll_interval("queued", None)) == pytest.approx(0.04)


def test_resolve_and_estimate_cost_use_openai_rules_and_the_price_table():
    spec = RunSpec(run_id="run-x", base_model=MODEL, training_file=Path("x"), dataset_id="d",
                   n_examples=12, run_dir=Path("."), hyperparameters={"n_epochs": "auto", "batch_size": 4})
    assert OpenAIBackend().resolve(spec) == {"n_epochs": 8, "batch_size": 4, "learning_rate_multiplier": "auto"}  # 100 // 12
    assert OpenAIBackend().estimate_cost(spec, 2_000_000) == pytest.approx(6.0)
    spec.base_model = "a-model-with-no-price"
    assert OpenAIBackend().estimate_cost(spec, 2_000_000) is None


def test_results_files_parse_plain_base64_extra_columns_and_empty_cells():
    plain = b"step,train_loss,train_accuracy,valid_loss,valid_mean_token_accuracy,new_col\n1,2.5,0.1,,,x\n2,2.0,0.2,2.1,0.15,\n"
    import base64

    for raw in (plain, base64.b64encode(plain), b"\xef\xbb\xbf" + plain):
        rows = parse_results(raw)
        assert rows[0] == {"step": 1, "train_loss": 2.5, "train_accuracy": 0.1}
        assert rows[1]["valid_loss"] == 2.1 and "new_col" not in rows[1]
