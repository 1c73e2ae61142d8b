"""`ftm import` of Together and Fireworks accounts: jobs made with each provider's plain SDK
against its stand-in come in as runs, with their data; jobs ftm submitted are recognised."""

from __future__ import annotations

import json
import time

import pytest
import together
from sdk_backends import aimed, chat_jsonl, served

from ftmanager import adopting, jobs
from ftmanager.ledger import ledger
from ftmanager.standin.together import standin as together_standin

TG_KEY = "tg-import-" + "s3cr3t" * 4
TG_MODEL = "meta-llama/Meta-Llama-3.1-8B-Instruct-Reference"
FAST = {"pending": 0.1, "queued": 0.1, "step": 0.05, "compressing": 0.05, "uploading": 0.05}

tg_server = served(together_standin, speed=40)


@pytest.fixture
def tg(tg_server, monkeypatch, ftm_home):
    tg_server.state.jobs.clear()
    tg_server.service.phases.update(FAST)
    return aimed(tg_server, monkeypatch, {"TOGETHER_BASE_URL": tg_server.base_url, "TOGETHER_API_KEY": TG_KEY,
                                          "FTM_POLL_SCALE": "0.02"}, unset=("TOGETHER_PROJECT_ID",))


def ended(client, job_id: str, timeout: float = 60):
    deadline = time.time() + timeout
    while (job := client.fine_tuning.retrieve(job_id)).status not in ("completed", "error", "cancelled", "user_error"):
        assert time.time() < deadline, job.status
        time.sleep(0.1)
    return job


def test_a_together_account_made_by_hand_comes_in(tg, tmp_path, chat_file):
    client = together.Together(api_key=TG_KEY, base_url=tg.base_url)
    path = tmp_path / "mine.jsonl"
    path.write_text(chat_jsonl(12))
    file_id = client.files.upload(file=path, purpose="fine-tune", check=False).id
    job = client.fine_tuning.create(model=TG_MODEL, training_file=file_id, n_epochs=2, suffix="mine", lora=True)
    done = ended(client, job.id)
    ours = jobs.submit(str(chat_file), "together", TG_MODEL, hyperparameters={"n_epochs": 1}, suffix="app")
    summary = adopting.import_history("together")
    assert [a["job_id"] for a in summary.adopted] == [job.id] and summary.already == [ours["provider_job_id"]]
    assert summary.downloaded == [file_id]
    run = jobs.show(job.id)
    assert (run["status"], run["method"], run["base_model"]) == ("succeeded", "sft", TG_MODEL)
    assert run["hyperparameters"]["n_epochs"] == 2 and run["options"]["training_type"] == "lora"
    assert run["result_model"] == done.model_output_name and run["metrics"] and run["events"]
    assert [json.loads(line) for line in open(ledger().dataset(run["dataset_id"])["path"])] == \
        [json.loads(line) for line in chat_jsonl(12).splitlines()]
    assert adopting.import_history("together").adopted == []


FW_KEY, FW_ACCOUNT = "fw-import-" + "k3y" * 8, "acme"
FW_MODEL = "accounts/fireworks/models/llama-v3p1-8b-instruct"
fw_server = served(__import__("ftmanager.standin.fireworks", fromlist=["standin"]).standin, speed=40)


@pytest.fixture
def fw(fw_server, monkeypatch, ftm_home):
    return aimed(fw_server, monkeypatch, {"FIREWORKS_BASE_URL": fw_server.url, "FIREWORKS_API_KEY": FW_KEY,
                                          "FIREWORKS_ACCOUNT_ID": FW_ACCOUNT}, unset=("FTM_POLL_SCALE",))


def test_a_fireworks_account_made_by_hand_comes_in_across_pages(fw, tmp_path):
    import fireworks

    client = fireworks.Fireworks(api_key=FW_KEY, base_url=fw.url, account_id=FW_ACCOUNT)
    client.datasets.create(dataset_id="mine", dataset={"example_count": "12", "user_uploaded": {}, "display_name": "mine"})
    client.datasets.upload("mine", file=("mine.jsonl", chat_jsonl(12).encode(), "application/jsonl"))
    while client.datasets.get("mine").state != "READY":
        time.sleep(0.05)
    made = [client.supervised_fine_tuning_jobs.create(
        supervised_fine_tuning_job_id=f"job-{i}", dataset=f"accounts/{FW_ACCOUNT}/datasets/mine", base_model=FW_MODEL,
        epochs=1, output_model=f"accounts/{FW_ACCOUNT}/models/m{i}") for i in range(3)]
    fw.requests.clear()
    summary = adopting.import_history("fireworks", page=2)
    assert fw.requests[("GET", f"/accounts/{FW_ACCOUNT}/supervisedFineTuningJobs")] == 2  # pages of two
    assert sorted(a["job_id"] for a in summary.adopted) == ["job-0", "job-1", "job-2"] and len(made) == 3
    assert summary.downloaded == [f"accounts/{FW_ACCOUNT}/datasets/mine"]  # once for the three jobs
    run = jobs.show("job-1")
    assert (run["backend"], run["base_model"], run["method"]) == ("fireworks", FW_MODEL, "supervised")
    assert ledger().dataset(run["dataset_id"])["n_examples"] == 12 and run["events"]
    assert adopting.import_history("fireworks").adopted == []


AZ_KEY = "az-import-" + "k3y" * 8
az_server = served(__import__("ftmanager.standin", fromlist=["standin"]).standin, speed=60, provider="azure",
                   api_key=AZ_KEY)


def test_an_azure_account_comes_in_through_the_azure_client(az_server, monkeypatch, ftm_home, tmp_path):
    import openai

    az = aimed(az_server, monkeypatch, {"AZURE_OPENAI_ENDPOINT": az_server.url, "AZURE_OPENAI_API_KEY": AZ_KEY},
               unset=("OPENAI_API_VERSION", "OPENAI_API_KEY", "OPENAI_BASE_URL", "FTM_POLL_SCALE"))
    client = openai.AzureOpenAI(api_key=AZ_KEY, azure_endpoint=az.url, api_version="2025-04-01-preview")
    path = tmp_path / "train.jsonl"
    path.write_text(chat_jsonl(12))
    with open(path, "rb") as fh:
        file_id = client.files.create(file=fh, purpose="fine-tune").id
    job = client.fine_tuning.jobs.create(model="gpt-4o-mini-2024-07-18", training_file=file_id, suffix="az")
    summary = adopting.import_history("azure")
    assert [a["job_id"] for a in summary.adopted] == [job.id] and summary.downloaded == [file_id]
    run = jobs.show(job.id)
    assert run["backend"] == "azure" and run["imported_from"].startswith(az.url)
