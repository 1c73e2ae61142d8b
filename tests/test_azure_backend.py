"""The Azure OpenAI backend: the OpenAI backend through the openai SDK's AzureOpenAI client, against
the OpenAI stand-in reached as Azure is (/openai paths, api-version on every request, the key in
an api-key header, chat through /deployments/{name}/chat/completions)."""

from __future__ import annotations

import httpx
import openai
import pytest
import sdk_backends as kit
from conftest import ftm
from ftm_backends.azure import DEFAULT_API_VERSION, AzureOpenAIBackend
from sdk_backends import MODEL, MemoryUploads, aimed, follow, make_spec, served
from test_openai_backend import jobs_tagged

from ftmanager.standin import standin
from ftmanager.errors import Refused

KEY = "az-test-" + "k3y" * 8
CREATE = ("POST", "/fine_tuning/jobs")


server = served(standin, speed=40, provider="azure", api_key=KEY)


@pytest.fixture
def env(server, monkeypatch):
    server.api_versions.clear()
    return aimed(server, monkeypatch, {"AZURE_OPENAI_ENDPOINT": server.url, "AZURE_OPENAI_API_KEY": KEY},
                 unset=("OPENAI_API_VERSION", "OPENAI_API_KEY", "OPENAI_BASE_URL", "FTM_POLL_SCALE"))


AZURE = kit.Hosted(AzureOpenAIBackend, openai.InternalServerError, CREATE, jobs_tagged)


def test_a_job_through_azure_paths_with_the_api_version_and_key_header(env, tmp_path):
    spec = make_spec(tmp_path)
    backend = AzureOpenAIBackend()
    job_id = backend.start(spec, MemoryUploads())
    last = follow(backend, job_id)[-1]
    job = env.state.jobs[job_id]
    assert last.status == "succeeded" and last.result_model == job.fine_tuned_model
    assert job.metadata == {"ftm_run_id": spec.run_id} and job.requested["n_epochs"] == 2
    assert env.api_versions == {DEFAULT_API_VERSION}  # sent on every call, as Azure requires
    assert env.requests[CREATE] == 1 and backend.account.startswith(env.url)
    answer = backend.generate(last.result_model, None, MODEL, [[{"role": "user", "content": "Capital of country 3?"}]])
    assert answer == ['{"capital": "City 3"}']  # through /deployments/<model>/chat/completions
    assert env.requests[("POST", f"/deployments/{last.result_model}/chat/completions")] == 1
    bare = httpx.get(f"{env.url}/openai/fine_tuning/jobs/{job_id}", headers={"api-key": KEY})
    assert bare.status_code == 404  # no api-version: no such resource, as on Azure


def test_the_openai_guarantees_hold_on_azure(env, tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_VERSION", "2024-10-21")
    kit.lost_answer_leaves_one_job(AZURE, env, make_spec(tmp_path))  # found by metadata
    assert env.api_versions == {"2024-10-21"}


def test_azure_refusals_name_azures_settings(env, tmp_path, monkeypatch):
    env.faults.add("403")
    with pytest.raises(Refused) as caught:
        AzureOpenAIBackend().start(make_spec(tmp_path), MemoryUploads())
    assert "Azure OpenAI denied permission (403" in caught.value.line() and "ftm rerun" not in caught.value.line()
    monkeypatch.setenv("AZURE_OPENAI_API_KEY", "az-wrong-key")
    with pytest.raises(Refused, match="Azure OpenAI rejected the API key read from AZURE_OPENAI_API_KEY"):
        AzureOpenAIBackend().start(make_spec(tmp_path), MemoryUploads())
    kit.refused_without(monkeypatch, lambda: AzureOpenAIBackend().start(make_spec(tmp_path), MemoryUploads()),
                        "AZURE_OPENAI_ENDPOINT", "AZURE_OPENAI_API_KEY")


def test_ftm_submit_backend_azure(env, chat_file, ftm_home, monkeypatch):
    monkeypatch.setenv("FTM_POLL_SCALE", "0.05")
    result = ftm("submit", chat_file, "--backend", "azure", "--epochs", "2", "--wait", "--json")
    assert result.code == 0, result
    run = result.json()
    assert run["backend"] == "azure" and run["base_model"] == MODEL and run["status"] == "succeeded"
    assert run["result_model"] == env.state.jobs[run["provider_job_id"]].fine_tuned_model
    assert [r["id"] for r in ftm("runs", "--backend", "azure", "--json").json()] == [run["id"]]
    assert KEY not in result.out + result.err


def test_an_azure_resources_jobs_are_listed_through_the_openai_listing(env, tmp_path):
    backend = AzureOpenAIBackend()
    made = [backend.start(make_spec(tmp_path, offset=i), MemoryUploads()) for i in range(3)]
    follow(backend, made[0])
    listed = {j.job_id: j for j in backend.list_jobs(page=2)}
    assert set(made) <= set(listed) and env.api_versions == {DEFAULT_API_VERSION}
    done = listed[made[0]]
    assert done.progress.status == "succeeded" and done.progress.result_model == env.state.jobs[made[0]].fine_tuned_model
    assert [e.id for e in done.progress.events] == [e["id"] for e in env.state.jobs[made[0]].events]
    assert done.request.metadata["ftm_run_id"].startswith("run-") and done.request.hyperparameters["n_epochs"] == 2


def test_a_dpo_run_on_azure_sends_method_dpo_and_answers_with_the_preferred_reply(env, tmp_path, ftm_home, monkeypatch):
    monkeypatch.setenv("FTM_POLL_SCALE", "0.05")
    prefs = kit.preferences(tmp_path / "prefs.jsonl")
    result = ftm("submit", prefs, "--backend", "azure", "--method", "dpo", "--beta", "0.5", "--epochs", "1", "--wait", "--json")
    assert result.code == 0, result
    run = result.json()
    job = env.state.jobs[run["provider_job_id"]]
    assert job.to_api()["method"] == {"type": "dpo", "dpo": {"hyperparameters": {
        "n_epochs": 1, "batch_size": 1, "learning_rate_multiplier": 1.8, "beta": 0.5}}}
    answer = AzureOpenAIBackend().generate(run["result_model"], None, MODEL,
                                           [[{"role": "user", "content": "Capital of country 4?"}]])
    assert answer == ["City 4."]  # the stand-in's tuned model gives the preferred answer
    from ftmanager.ledger import ledger

    sent = [e["data"]["train_reward_margin"] for e in job.events if e["type"] == "metrics"]
    assert [v for _, v in ledger().metric_curve(run["id"], "train_reward_margin")] == sent  # the DPO figures, by name
