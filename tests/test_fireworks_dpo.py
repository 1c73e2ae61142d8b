"""DPO on Fireworks through `ftm` and the official fireworks-ai SDK against the stand-in: a DPO run is a
dpoJob (its own resource) with beta, followed to its model and pulled like a supervised job's; a DPO
run re-runs from OpenAI to Fireworks with its beta; `ftm import` sees the account's DPO jobs."""

from __future__ import annotations

import json
import time

import pytest
from conftest import ftm
from sdk_backends import aimed, preferences, served

from ftmanager import adopting, jobs, registry
from ftmanager.ledger import ledger
from ftmanager.standin import standin

KEY, ACCOUNT = "fw-dpo-" + "k3y" * 8, "acme"
MODEL = "accounts/fireworks/models/llama-v3p1-8b-instruct"
OPENAI_KEY = "sk-test-" + "fwd" * 8


@pytest.fixture(scope="module")
def adapter(tmp_path_factory):
    """The files every completed job's model downloads as (not loaded here: pulled and compared)."""
    import numpy as np
    from safetensors.numpy import save_file

    folder = tmp_path_factory.mktemp("dpo-adapter")
    (folder / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 8}))
    save_file({"lora_A": np.arange(16, dtype=np.float32).reshape(4, 4)}, str(folder / "adapter_model.safetensors"))
    return folder


@pytest.fixture(scope="module")
def server(adapter):
    with standin(speed=40, provider="fireworks", adapter=adapter) as srv:
        yield srv


openai_server = served(standin, speed=40)


@pytest.fixture
def env(server, monkeypatch, ftm_home):
    return aimed(server, monkeypatch, {"FIREWORKS_BASE_URL": server.url, "FIREWORKS_API_KEY": KEY,
                                       "FIREWORKS_ACCOUNT_ID": ACCOUNT, "FTM_POLL_SCALE": "0.05"})


def test_a_dpo_run_is_a_dpo_job_with_beta_followed_to_its_model_and_pulled(env, adapter, tmp_path, ftm_home):
    prefs = preferences(tmp_path / "prefs.jsonl")
    done = ftm("submit", prefs, "-b", "fireworks", "--method", "dpo", "--beta", "0.2", "--epochs", "2",
               "--suffix", "pref", "--wait", "--json")
    assert done.code == 0, done
    run = done.json()
    assert run["provider_job_id"] == f"dpoJobs/ftm-{run['id']}" and run["status"] == "succeeded"
    asked = env.service.requests[run["provider_job_id"]]
    assert asked["lossConfig"] == {"method": "DPO", "dpo": {"beta": 0.2}}
    assert (asked["trainingConfig"]["epochs"], asked["trainingConfig"]["baseModel"]) == (2, MODEL)
    assert run["result_model"] == asked["trainingConfig"]["outputModel"] == f"accounts/{ACCOUNT}/models/pref-{run['id']}"
    assert run["hyperparameters"]["method"] == "dpo" and run["resolved_hyperparameters"]["beta"] == 0.2
    assert env.requests[("POST", f"/accounts/{ACCOUNT}/supervisedFineTuningJobs")] == 0
    states = [e["data"]["state"] for e in ftm("show", run["id"], "--json").json()["events"] if (e["data"] or {}).get("state")]
    assert states[-1] == "JOB_STATE_COMPLETED"
    pulled = ftm("pull", run["id"], "--json")
    assert pulled.code == 0, pulled
    home = ftm_home / "runs" / run["id"] / "adapter"
    for name in ("adapter_config.json", "adapter_model.safetensors"):
        assert (home / name).read_bytes() == (adapter / name).read_bytes()


def test_dpo_on_an_sft_runs_model_warm_starts_from_it_as_a_chain(env, tmp_path, chat_file):
    sft = jobs.submit(str(chat_file), "fireworks", suffix="sft", wait=True)
    assert sft["status"] == "succeeded", sft
    dpo = jobs.submit(str(preferences(tmp_path / "p.jsonl", offset=20)), "fireworks", sft["result_model"],
                      hyperparameters={"method": "dpo", "beta": 0.15}, wait=True)
    config = env.service.requests[dpo["provider_job_id"]]["trainingConfig"]
    assert config["warmStartFrom"] == sft["result_model"] and "baseModel" not in config  # on top of the addon
    assert dpo["status"] == "succeeded" and env.state.jobs[dpo["provider_job_id"]].model == MODEL
    events = jobs.show(dpo["id"])["events"]
    assert any(f"trains on top of {sft['id']}'s model" in e["message"] for e in events)
    from ftm_backends.fireworks import weights  # a merged pull merges into the addon's own base

    _, account, _, model_id = dpo["result_model"].split("/")
    assert weights._addon_base(registry.get("fireworks"), account, model_id) == MODEL


def test_auto_beta_is_sent_as_point_one_and_recorded(env, tmp_path):
    run = jobs.submit(str(preferences(tmp_path / "p.jsonl", offset=50)), "fireworks",
                      hyperparameters={"method": "dpo"})
    assert env.service.requests[run["provider_job_id"]]["lossConfig"]["dpo"]["beta"] == 0.1
    assert run["hyperparameters"].get("beta", "auto") == "auto" and run["resolved_hyperparameters"]["beta"] == 0.1
    jobs.cancel(run["id"])
    assert env.service.times(env.state.jobs[run["provider_job_id"]])["state"] == "JOB_STATE_CANCELLED"


def test_an_openai_dpo_run_re_runs_on_fireworks_with_its_beta(env, openai_server, monkeypatch, tmp_path):
    aimed(openai_server, monkeypatch, {"OPENAI_BASE_URL": openai_server.url, "OPENAI_API_KEY": OPENAI_KEY},
          unset=("OPENAI_ORG_ID", "OPENAI_PROJECT_ID"))
    prefs = preferences(tmp_path / "prefs.jsonl", offset=100)
    first = ftm("submit", prefs, "-b", "openai", "--method", "dpo", "--beta", "0.3", "--wait", "--json")
    assert first.code == 0, first
    again = ftm("rerun", first.json()["id"], "-b", "fireworks", "--wait", "--json")
    assert again.code == 0, again
    child = again.json()
    assert child["status"] == "succeeded" and child["base_model"] == MODEL and "method=dpo" in again.err
    assert env.service.requests[child["provider_job_id"]]["lossConfig"]["dpo"]["beta"] == 0.3
    assert child["hyperparameters"]["beta"] == 0.3 and child["parent_run_id"] == first.json()["id"]


def test_import_sees_the_accounts_dpo_jobs_and_they_re_run(env, tmp_path):
    import fireworks

    client = fireworks.Fireworks(api_key=KEY, base_url=env.url, account_id=ACCOUNT)
    pairs = preferences(tmp_path / "mine.jsonl", offset=200).read_bytes()
    client.datasets.create(dataset_id="mine-pairs", dataset={"example_count": "12", "user_uploaded": {}})
    client.datasets.upload("mine-pairs", file=("mine.jsonl", pairs, "application/jsonl"))
    while client.datasets.get("mine-pairs").state != "READY":
        time.sleep(0.02)
    client.dpo_jobs.create(dpo_job_id="by-hand", dataset=f"accounts/{ACCOUNT}/datasets/mine-pairs",
                           training_config={"base_model": MODEL, "epochs": 1},
                           loss_config={"method": "DPO", "dpo": {"beta": 0.25}})
    while client.dpo_jobs.get("by-hand").state != "JOB_STATE_COMPLETED":
        time.sleep(0.02)
    summary = adopting.import_history("fireworks")
    adopted = {a["job_id"]: a for a in summary.adopted}
    assert adopted["dpoJobs/by-hand"]["method"] == "dpo" and summary.not_rerunnable == {}
    assert adopting.import_history("fireworks", job="by-hand").already == ["dpoJobs/by-hand"]  # its bare id too
    run = jobs.show("dpoJobs/by-hand")
    assert (run["status"], run["hyperparameters"]["beta"], run["resolved_hyperparameters"]["beta"]) == ("succeeded", 0.25, 0.25)
    assert ledger().dataset(run["dataset_id"])["kind"] == "preference"
    child, mapped = jobs.rerun(run["id"], "fireworks")
    assert "method=dpo" in mapped.notes
    assert env.service.requests[child["provider_job_id"]]["lossConfig"]["dpo"]["beta"] == 0.25
    assert adopting.import_history("fireworks").adopted == []  # the re-run is ftm's own
