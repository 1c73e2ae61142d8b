"""DPO on OpenAI's API through the official openai SDK against the stand-in: `ftm submit --method dpo`
sends method.type "dpo" with beta, the stand-in validates preference files as OpenAI does, and a
DPO run on an earlier run's ft: model is recorded as a link of a chain."""

from __future__ import annotations

import json

import pytest
from conftest import ftm
from sdk_backends import MODEL, MemoryUploads, aimed, follow, make_spec, preferences, served

from ftm_backends.openai import OpenAIBackend
from ftmanager.standin import standin

KEY = "sk-test-" + "dp0" * 8
server = served(standin, speed=40)


@pytest.fixture
def env(server, monkeypatch):
    return aimed(server, monkeypatch, {"OPENAI_BASE_URL": server.url, "OPENAI_API_KEY": KEY},
                 unset=("OPENAI_ORG_ID", "OPENAI_PROJECT_ID", "FTM_POLL_SCALE"))


def test_a_dpo_run_sends_method_dpo_with_beta_and_records_it(env, tmp_path, ftm_home):
    prefs = preferences(tmp_path / "prefs.jsonl")
    done = ftm("submit", prefs, "-b", "openai", "--method", "dpo", "--beta", "0.25", "--epochs", "1", "--wait", "--json")
    assert done.code == 0, done
    run = done.json()
    job = env.state.jobs[run["provider_job_id"]]
    assert job.to_api()["method"]["type"] == "dpo"
    assert job.requested["beta"] == 0.25 and job.requested["n_epochs"] == 1
    assert run["hyperparameters"] == {"n_epochs": 1, "batch_size": "auto", "learning_rate_multiplier": "auto",
                                      "method": "dpo", "beta": 0.25}
    assert run["status"] == "succeeded" and run["result_model"].startswith(f"ft:{MODEL}:")
    _dpo_figures_recorded(job, run["id"])


def _dpo_figures_recorded(job, run_id: str) -> None:
    """Every numeric key of the job's metrics events beyond the fixed columns is in the ledger under
    the name the provider sent, and `ftm show` lists their last values."""
    from ftmanager.ledger import ledger

    sent = [e["data"] for e in job.events if e["type"] == "metrics"]
    assert sent and "train_reward_margin" in sent[0]
    assert ledger().metric_curve(run_id, "train_reward_margin") == [(d["step"], d["train_reward_margin"]) for d in sent]
    assert ledger().metric_summary(run_id)["final_train_reward_accuracy"] == sent[-1]["train_reward_accuracy"]
    shown = ftm("show", run_id)
    assert shown.code == 0 and "figures (last value):" in shown.out
    last = shown.out.split("figures (last value):")[1].split("\n\n")[0].split()
    assert last[last.index("train_reward_margin") + 1] == f"{sent[-1]['train_reward_margin']:.4f}"


def test_beta_by_p_and_auto_beta_are_resolved_by_the_provider(env, tmp_path, ftm_home):
    prefs = preferences(tmp_path / "prefs.jsonl")
    done = ftm("submit", prefs, "-b", "openai", "--method", "dpo", "--wait", "--json")
    assert done.code == 0, done
    job = env.state.jobs[done.json()["provider_job_id"]]
    assert job.requested["beta"] == "auto" and job.to_api()["method"]["dpo"]["hyperparameters"]["beta"] == 0.1
    by_p = ftm("submit", prefs, "-b", "openai", "--method", "dpo", "-p", "beta=1.5", "--json")
    assert by_p.code == 0, by_p
    assert env.state.jobs[by_p.json()["provider_job_id"]].requested["beta"] == 1.5


def test_the_stand_in_fails_a_dpo_job_whose_file_holds_chat_examples_as_openai_does(env, tmp_path):
    spec = make_spec(tmp_path, hyperparameters={"method": "dpo", "beta": 0.1})  # chat rows, past ftm's own check
    backend = OpenAIBackend()
    last = follow(backend, backend.start(spec, MemoryUploads()))[-1]
    assert last.status == "failed" and last.error["code"] == "invalid_file_format"
    assert 'Line 1, key "input.messages": missing' in last.error["message"]


def test_the_stand_in_refuses_a_bad_beta_and_an_unknown_method_naming_the_param(env, tmp_path):
    client = OpenAIBackend().client
    file_id = client.files.create(file=preferences(tmp_path / "p.jsonl").open("rb"), purpose="fine-tune").id
    import openai

    for method, param in (({"type": "dpo", "dpo": {"hyperparameters": {"beta": 0}}}, "method.dpo.hyperparameters.beta"),
                          ({"type": "dpo", "dpo": {"hyperparameters": {"beta": 2.5}}}, "method.dpo.hyperparameters.beta"),
                          ({"type": "reinforcement"}, "method.type")):
        with pytest.raises(openai.BadRequestError) as caught:
            client.fine_tuning.jobs.create(model=MODEL, training_file=file_id, method=method)
        assert caught.value.body["param"] == param
    assert env.state.jobs == {} or all(j.training_file != file_id for j in env.state.jobs.values())


def test_dpo_on_an_sft_model_is_recorded_as_a_chain(env, tmp_path, ftm_home, chat_file):
    sft = ftm("submit", chat_file, "-b", "openai", "--epochs", "1", "--wait", "--json")
    assert sft.code == 0, sft
    sft_model = sft.json()["result_model"]
    prefs = preferences(tmp_path / "prefs.jsonl")
    dpo = ftm("submit", prefs, "-b", "openai", "-m", sft_model, "--method", "dpo", "--epochs", "1", "--wait", "--json")
    assert dpo.code == 0, dpo
    run = dpo.json()
    assert env.state.jobs[run["provider_job_id"]].model == sft_model
    events = ftm("show", run["id"], "--json").json()["events"]
    assert any(f"trains on top of {sft.json()['id']}'s model {sft_model}" in e["message"] for e in events)
    assert run["base_run_id"] == sft.json()["id"]  # re-run elsewhere as a chain: tests/test_chains.py
    plot = tmp_path / "margins.png"
    compared = ftm("compare", sft.json()["id"], run["id"], "--plot", plot, "--metric", "train_reward_margin")
    assert compared.code == 0, compared
    assert "final_train_reward_margin" in compared.out and f"train_reward_margin curves written to {plot}" in compared.out
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    sft_only = ftm("compare", sft.json()["id"], sft.json()["id"], "--plot", tmp_path / "no.png", "--metric", "rewards/margins")
    assert sft_only.code == 1 and "none of these runs reports a metric called 'rewards/margins'" in sft_only.err
    assert not (tmp_path / "no.png").exists()
