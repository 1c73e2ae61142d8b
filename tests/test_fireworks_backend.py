"""The Fireworks backend through the official fireworks-ai SDK against the stand-in over loopback,
with the faults a provider throws: one job per run whatever happens to the create."""

from __future__ import annotations

import time

import fireworks
import pytest
import sdk_backends as kit
from sdk_backends import MemoryUploads, aimed, follow, make_spec, served

from ftm_backends.fireworks import FireworksBackend, job_id_for
from ftmanager.standin.fireworks import standin
from ftmanager.backend import RunSpec
from ftmanager.errors import BackendError, FtmError, InvalidInput, NotFound, Refused, Unsupported

KEY, ACCOUNT = "fw-test-" + "k3y" * 8, "acme"
MODEL = "accounts/fireworks/models/llama-v3p1-8b-instruct"
JOBS = f"/accounts/{ACCOUNT}/supervisedFineTuningJobs"
DATASETS = f"/accounts/{ACCOUNT}/datasets"


server = served(standin, speed=40)


@pytest.fixture
def env(server, monkeypatch):
    """The SDK's environment pointing at the stand-in; faults and counts reset."""
    server.service.speed = 40
    return aimed(server, monkeypatch, {"FIREWORKS_BASE_URL": server.url, "FIREWORKS_API_KEY": KEY,
                                       "FIREWORKS_ACCOUNT_ID": ACCOUNT}, unset=("FTM_POLL_SCALE",))


def spec_for(tmp_path, **fields) -> RunSpec:
    """A run's spec on fresh data for a Fireworks model (offset=N makes another dataset)."""
    return make_spec(tmp_path, **{"base_model": MODEL, "suffix": "caps", **fields})


def jobs_of(server, run_id: str) -> list[str]:
    return [job_id for job_id in server.state.jobs if job_id == job_id_for(run_id)]


FIREWORKS = kit.Hosted(FireworksBackend, fireworks.InternalServerError, ("POST", JOBS), jobs_of)


def test_a_run_is_a_dataset_then_a_job_followed_to_its_model(env, tmp_path):
    spec = spec_for(tmp_path, validation=4, hyperparameters={"n_epochs": 2, "learning_rate_multiplier": 2.0},
                     options={"lora_r": "16"})
    backend = FireworksBackend()
    job_id = backend.start(spec, MemoryUploads())
    assert job_id == job_id_for(spec.run_id) == f"ftm-{spec.run_id}"
    asked = env.service.requests[job_id]
    assert asked["dataset"] == f"accounts/{ACCOUNT}/datasets/ftm-{spec.dataset_id[:40]}"
    assert asked["evaluationDataset"] == f"accounts/{ACCOUNT}/datasets/ftm-{spec.validation_dataset_id[:40]}"
    assert (asked["epochs"], asked["loraRank"], asked["learningRate"]) == (2, 16, pytest.approx(2e-4))
    assert asked["outputModel"] == f"accounts/{ACCOUNT}/models/caps-{spec.run_id}"
    seen = follow(backend, job_id)
    events = [e for p in seen for e in p.events]
    states = [e.data["state"] for e in events if "state" in e.data]
    assert states[-1] == "JOB_STATE_COMPLETED" and all(s.startswith("JOB_STATE_") for s in states)
    assert [f"Fireworks job {s}" for s in states] == [e.message for e in events if "state" in e.data]
    assert [e.data["epoch"] for e in events if "epoch" in e.data] == sorted({e.data["epoch"] for e in events if "epoch" in e.data})
    last, job = seen[-1], env.state.jobs[job_id]
    assert last.status == "succeeded" and last.result_model == asked["outputModel"]
    assert last.hyperparameters == {"n_epochs": 2, "learning_rate": pytest.approx(2e-4), "learning_rate_multiplier": pytest.approx(2.0),
                                    "lora_r": 16, "max_context_length": 8192}
    assert last.trained_tokens == job.trained_tokens and last.actual_cost == pytest.approx(job.trained_tokens * 0.5 / 1e6)
    assert last.finished_at == pytest.approx(job.finished_at, abs=0.001)
    assert len({e.id for e in events}) == len(events)  # deduplicated on the ledger's side by id


def test_a_dataset_is_made_once_per_content_and_account(env, tmp_path, monkeypatch):
    spec, uploads = spec_for(tmp_path, offset=100), MemoryUploads()
    backend = FireworksBackend()
    backend.start(spec, uploads)
    second = spec_for(tmp_path, offset=100)
    backend.start(second, uploads)
    assert env.requests[("POST", DATASETS)] == 1  # the second run reuses the READY dataset
    made = env.service.datasets[(ACCOUNT, f"ftm-{spec.dataset_id[:40]}")]
    assert made.example_count == 12 and made.ready()
    monkeypatch.setenv("FIREWORKS_ACCOUNT_ID", "other")  # another account has its own datasets
    FireworksBackend().start(spec_for(tmp_path, offset=100), uploads)
    assert ("other", made.id) in env.service.datasets


def test_a_start_cut_off_after_the_dataset_was_made_finds_it_again(env, tmp_path):
    spec = spec_for(tmp_path, offset=200)
    env.faults.add("drop", "POST", f"{DATASETS}/*:upload", times=3)  # the SDK's retries too
    with pytest.raises(fireworks.APIConnectionError):
        FireworksBackend().start(spec, MemoryUploads())
    job_id = FireworksBackend().start(spec, MemoryUploads())  # what `ftm sync` does next
    assert env.requests[("POST", DATASETS)] == 2  # the second create was a 409: the same dataset
    assert jobs_of(env, spec.run_id) == [job_id]


@kit.each_create_fault(kit.lost_answer_leaves_one_job, kit.failing_create_is_no_refusal)
def test_one_job_per_run_whatever_happens_to_the_create(env, tmp_path, check):
    check(FIREWORKS, env, spec_for(tmp_path))  # a job is found by the id it was given


def test_a_create_sent_again_after_the_job_was_made_is_a_409_that_keeps_one_job(env, tmp_path):
    spec = spec_for(tmp_path)
    env.faults.add("drop_after", "POST", JOBS)
    env.faults.add("500", "GET", f"{JOBS}/{job_id_for(spec.run_id)}", times=3)  # the look-up fails too
    with pytest.raises(BackendError) as caught:
        FireworksBackend().start(spec, MemoryUploads())
    assert not isinstance(caught.value, Refused)  # the run stays `created` for `ftm sync`
    job_id = FireworksBackend().start(spec, MemoryUploads())  # started again all the same
    assert jobs_of(env, spec.run_id) == [job_id]
    assert env.requests[("POST", JOBS)] == 2  # posted again: the 409 said the first one made it


def test_server_errors_and_rate_limits_on_create_are_retried_without_duplicates(env, tmp_path):
    spec = spec_for(tmp_path)
    env.faults.add("500", "POST", JOBS)
    env.faults.add("429", "POST", JOBS, retry_after=1.0)
    began = time.monotonic()
    job_id = FireworksBackend().start(spec, MemoryUploads())
    assert time.monotonic() - began >= 1.0  # the provider's retry-after, not the SDK's 0.5 s
    assert jobs_of(env, spec.run_id) == [job_id] and env.requests[("POST", JOBS)] == 3


def test_a_dropped_or_failing_poll_is_retried_by_the_sdk(env, tmp_path):
    job_id, seen = kit.followed_through(env, FireworksBackend(), spec_for(tmp_path),
                                        ("drop", "GET", JOBS + "/{id}"), ("500", "GET", JOBS + "/{id}"))
    assert seen[-1].status == "succeeded"
    env.faults.add("503", "GET", f"{JOBS}/{job_id}", times=2)
    with pytest.raises(BackendError, match="Fireworks at http://127.0.0.1:.* did not answer"):
        FireworksBackend(max_retries=1).poll(job_id, {})


def test_a_job_id_taken_by_another_dataset_is_refused(env, tmp_path):
    spec = spec_for(tmp_path)
    FireworksBackend().start(spec, MemoryUploads())
    other = spec_for(tmp_path, offset=300)
    other.run_id = spec.run_id  # another ledger's run with the same id
    with pytest.raises(Refused, match="already has a job ftm-run-.* on another dataset"):
        FireworksBackend().start(other, MemoryUploads())


def test_cancel_and_find(env, tmp_path):
    env.service.speed = 2
    backend = FireworksBackend()
    spec = spec_for(tmp_path)
    job_id = backend.start(spec, MemoryUploads())
    assert backend.find(spec.run_id) == job_id and backend.find("run-never") is None
    backend.cancel(job_id)
    last = backend.poll(job_id, {})
    assert last.status == "cancelled" and last.events[-1].message.startswith("Fireworks job JOB_STATE_CANCELLED")
    with pytest.raises(NotFound):
        backend.cancel("ftm-run-never")


def test_refusals_are_one_line_and_never_show_the_key(env, tmp_path, monkeypatch):
    with pytest.raises(Refused, match=r"Fireworks refused the request: base model 'accounts/x/models/y'"):
        FireworksBackend().start(spec_for(tmp_path, base_model="accounts/x/models/y"), MemoryUploads())
    env.api_key = "fw-the-right-one"
    try:
        with pytest.raises(Refused) as caught:
            FireworksBackend().start(spec_for(tmp_path), MemoryUploads())
    finally:
        env.api_key = None
    assert "FIREWORKS_API_KEY" in caught.value.line() and KEY[-6:] not in caught.value.line()
    kit.refused_without(monkeypatch, lambda: FireworksBackend().start(spec_for(tmp_path), MemoryUploads()),
                        "FIREWORKS_ACCOUNT_ID", "FIREWORKS_API_KEY")


def test_models_options_and_answers_are_checked_before_anything_is_sent():
    backend = FireworksBackend()
    for bad in ("gpt-4o-mini-2024-07-18", "llama-v3p1-8b-instruct", "/models/tiny", "accounts//models/x"):
        with pytest.raises(InvalidInput, match="is not a Fireworks model name"):
            backend.check_model(bad)
    backend.check_model(MODEL)
    backend.check_options({"lora_r": "16", "early_stop": "true", "learning_rate": "3e-4"})
    for options, why in (({"lora_r": "sixteen"}, "must be a whole number"), ({"lora_r": "0"}, "above 0"),
                         ({"early_stop": "maybe"}, "true or false"), ({"seed": "1"}, "has no option seed")):
        with pytest.raises(FtmError, match=why):
            backend.check_options(options)
    with pytest.raises(Unsupported, match="ftm pull RUN"):
        backend.generate("accounts/acme/models/x", None, MODEL, [[{"role": "user", "content": "hi"}]])


def test_download_refuses_names_outside_the_folder_and_says_when_urls_expired(env, tmp_path):
    from ftmanager.standin import fireworks as routes

    adapter = tmp_path / "served"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text("{}")
    env.service.adapter = adapter
    backend = FireworksBackend()
    job_id = backend.start(spec_for(tmp_path), MemoryUploads())
    model = follow(backend, job_id)[-1].result_model
    got = backend.download(job_id, model, tmp_path / "home" / "adapter")
    assert (got / "adapter_config.json").read_text() == "{}" and not list(got.glob(".*.part"))

    def evil(srv, req):  # a provider naming a file outside the folder
        urls = routes.download_endpoint(srv, req)["filenameToSignedUrls"]
        return {"filenameToSignedUrls": {"../evil.txt": urls["adapter_config.json"]}}

    def stale(srv, req):  # signed URLs that expired before they were used
        urls = routes.download_endpoint(srv, req)
        srv.service.signed.clear()
        return urls

    original = env.routes
    try:
        env.routes = [(m, p, evil if fn is routes.download_endpoint else fn, lock) for m, p, fn, lock in original]
        with pytest.raises(BackendError, match="named a file '../evil.txt', which cannot be a file in the model's folder"):
            backend.download(job_id, model, tmp_path / "other" / "adapter")
        env.routes = [(m, p, stale if fn is routes.download_endpoint else fn, lock) for m, p, fn, lock in original]
        with pytest.raises(BackendError, match=r"downloading adapter_config.json from Fireworks failed \(HTTP 403\)"):
            backend.download(job_id, model, tmp_path / "late" / "adapter")
    finally:
        env.routes, env.service.adapter = original, None
    assert not (tmp_path / "other" / "evil.txt").exists() and not list((tmp_path / "late").rglob("*.part"))
