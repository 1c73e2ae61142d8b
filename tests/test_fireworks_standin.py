"""ftm's Fireworks stand-in, driven by the official fireworks-ai SDK unchanged (and by plain HTTP
where the SDK would hide the answer): Fireworks' paths, fields, states, rules and error shape."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time

import fireworks
import httpx
import pytest

from ftmanager.standin import standin

ACCOUNT, MODEL = "acme", "accounts/fireworks/models/llama-v3p2-1b-instruct"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    adapter = tmp_path_factory.mktemp("adapter")
    (adapter / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 8}))
    (adapter / "adapter_model.safetensors").write_bytes(bytes(range(256)) * 64)
    with standin(speed=50, provider="fireworks", adapter=adapter) as srv:
        yield srv


@pytest.fixture
def fw(server):
    server.faults.clear()
    server.service.speed = 50
    return fireworks.Fireworks(api_key="fw-any", account_id=ACCOUNT, base_url=server.url, max_retries=0)


def rows(n: int) -> bytes:
    return "".join(json.dumps({"messages": [{"role": "user", "content": f"q{i}"},
                                            {"role": "assistant", "content": f"a{i}"}]}) + "\n"
                   for i in range(n)).encode()


def ready_dataset(fw, ds_id: str, n: int = 6) -> str:
    fw.datasets.create(dataset_id=ds_id, dataset={"example_count": str(n), "user_uploaded": {}})
    fw.datasets.upload(ds_id, file=(f"{ds_id}.jsonl", rows(n), "application/jsonl"))
    deadline = time.time() + 10
    while fw.datasets.get(ds_id).state != "READY":
        assert time.time() < deadline
        time.sleep(0.01)
    return f"accounts/{ACCOUNT}/datasets/{ds_id}"


def test_a_dataset_becomes_ready_only_with_the_file_it_was_promised(fw):
    made = fw.datasets.create(dataset_id="promised", dataset={"example_count": "6", "user_uploaded": {}})
    assert (made.name, made.state, made.example_count) == (f"accounts/{ACCOUNT}/datasets/promised", "UPLOADING", "6")
    with pytest.raises(fireworks.BadRequestError, match="holds 4 examples but the dataset was created with exampleCount 6"):
        fw.datasets.upload("promised", file=("d.jsonl", rows(4), "application/jsonl"))
    with pytest.raises(fireworks.BadRequestError, match="exampleCount is required"):
        fw.datasets.create(dataset_id="uncounted", dataset={"user_uploaded": {}})
    fw.datasets.create(dataset_id="tiny", dataset={"example_count": "2"})
    with pytest.raises(fireworks.BadRequestError, match="must have at least 3 examples"):
        fw.datasets.upload("tiny", file=("d.jsonl", rows(2), "application/jsonl"))
    with pytest.raises(fireworks.ConflictError):
        fw.datasets.create(dataset_id="promised", dataset={"example_count": "6"})
    with pytest.raises(fireworks.BadRequestError, match="is not READY"):
        fw.supervised_fine_tuning_jobs.create(dataset=f"accounts/{ACCOUNT}/datasets/promised", base_model=MODEL)
    ready_dataset(fw, "kept")
    assert {d.name.rsplit("/", 1)[-1] for d in fw.datasets.list()} >= {"promised", "tiny", "kept"}


def test_a_job_moves_through_fireworks_states_to_a_downloadable_model(fw, server):
    name = ready_dataset(fw, "states")
    job = fw.supervised_fine_tuning_jobs.create(dataset=name, base_model=MODEL, supervised_fine_tuning_job_id="states-job",
                                                epochs=2, lora_rank=16, display_name="demo")
    assert (job.name, job.state, job.lora_rank, job.epochs) == (
        f"accounts/{ACCOUNT}/supervisedFineTuningJobs/states-job", "JOB_STATE_VALIDATING", 16, 2)
    seen = []
    while job.state != "JOB_STATE_COMPLETED":
        job = fw.supervised_fine_tuning_jobs.get("states-job")
        seen.append(job.state)
        time.sleep(0.01)
    assert [s for i, s in enumerate(seen) if i == 0 or seen[i - 1] != s][-3:] == [
        "JOB_STATE_PENDING", "JOB_STATE_RUNNING", "JOB_STATE_COMPLETED"]
    assert job.job_progress.percent == 100 and job.job_progress.epoch == 1 and job.completed_time
    assert job.output_model == f"accounts/{ACCOUNT}/models/states-job"
    model = fw.models.get("states-job")
    assert model.kind == "HF_PEFT_ADDON" and model.peft_details.base_model == MODEL
    urls = fw.models.get_download_endpoint("states-job").filename_to_signed_urls
    assert set(urls) == {"adapter_config.json", "adapter_model.safetensors"}
    got = httpx.get(urls["adapter_model.safetensors"])  # no key: the URL is its own permission
    assert got.status_code == 200 and got.content == bytes(range(256)) * 64
    assert httpx.get(re.sub(r"/signed/[^/]+/", "/signed/forged/", urls["adapter_config.json"])).status_code == 403


def test_job_ids_are_the_clients_and_listing_pages(fw, server):
    name = ready_dataset(fw, "paged")
    server.service.speed = 0.5  # the jobs stay running while the test cancels one
    for i in range(3):
        fw.supervised_fine_tuning_jobs.create(dataset=name, base_model=MODEL, supervised_fine_tuning_job_id=f"page-{i}")
    with pytest.raises(fireworks.ConflictError):
        fw.supervised_fine_tuning_jobs.create(dataset=name, base_model=MODEL, supervised_fine_tuning_job_id="page-0")
    listed = [j.name.rsplit("/", 1)[-1] for j in fw.supervised_fine_tuning_jobs.list(page_size=2)]  # SDK pages on
    assert {"page-0", "page-1", "page-2"} <= set(listed) and len(listed) == len(set(listed))
    fw.supervised_fine_tuning_jobs.cancel("page-1", body={})
    assert fw.supervised_fine_tuning_jobs.get("page-1").state == "JOB_STATE_CANCELLED"
    with pytest.raises(fireworks.BadRequestError, match="cannot be cancelled"):
        fw.supervised_fine_tuning_jobs.cancel("page-1", body={})
    with pytest.raises(fireworks.NotFoundError):
        fw.supervised_fine_tuning_jobs.get("page-0", account_id="someone-else")


def test_bad_requests_are_400s_in_the_gateways_shape(fw, server):
    name = ready_dataset(fw, "bad")
    for bad, why in (({"base_model": "accounts/x/models/y"}, "is not available for fine-tuning"),
                     ({"base_model": MODEL, "epochs": 0}, "epochs must be a whole number"),
                     ({"base_model": MODEL, "learning_rate": -1.0}, "learningRate must be above 0"),
                     ({"base_model": MODEL, "output_model": "Not An Id"}, "outputModel must be")):
        with pytest.raises(fireworks.BadRequestError, match=why) as caught:
            fw.supervised_fine_tuning_jobs.create(dataset=name, **bad)
        assert set(caught.value.body) == {"code", "message", "details"} and caught.value.body["code"] == 3
    snake = httpx.post(f"{server.url}/v1/accounts/{ACCOUNT}/supervisedFineTuningJobs",
                       headers={"Authorization": "Bearer k"}, json={"dataset": name, "base_model": MODEL})
    assert snake.status_code == 400 and "unknown field 'base_model'" in snake.json()["message"]
    bare = httpx.get(f"{server.url}/v1/accounts/{ACCOUNT}/datasets")
    assert bare.status_code == 401 and bare.json()["code"] == 16


def test_faults_reach_the_sdk_as_fireworks_errors(fw, server):
    server.faults.add("429", "GET", f"/accounts/{ACCOUNT}/datasets", retry_after=0)
    with pytest.raises(fireworks.RateLimitError) as caught:
        fw.datasets.list().datasets
    assert caught.value.body["code"] == 8 and caught.value.response.headers["retry-after"] == "0"
    server.faults.add("503", "GET", f"/accounts/{ACCOUNT}/datasets")
    with pytest.raises(fireworks.InternalServerError):
        fw.datasets.list().datasets
    server.faults.add("drop", "GET", f"/accounts/{ACCOUNT}/datasets")
    with pytest.raises(fireworks.APIConnectionError):
        fw.datasets.list().datasets


def test_ftm_standin_serves_fireworks_and_says_how_to_reach_it(tmp_path):
    proc = subprocess.Popen([sys.executable, "-m", "ftmanager", "standin", "--provider", "fireworks", "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first, second = proc.stdout.readline(), proc.stdout.readline()
        url = re.search(r"FIREWORKS_BASE_URL=(\S+)", second).group(1)
        assert first.startswith(f"ftm stand-in Fireworks server on {url}") and "FIREWORKS_ACCOUNT_ID=" in second
        client = fireworks.Fireworks(api_key="k", account_id="standin", base_url=url, max_retries=0)
        assert client.datasets.list().datasets == []
    finally:
        proc.terminate()
        proc.communicate(timeout=30)
    wrong = subprocess.run([sys.executable, "-m", "ftmanager", "standin", "--adapter", str(tmp_path)],
                           capture_output=True, text=True, timeout=60)
    line = wrong.stderr.strip()  # the OpenAI stand-in serves no adapter: one line says whose does
    assert wrong.returncode == 1 and line.startswith("Error: --adapter") and "fireworks" in line and "\n" not in line
