"""A third-party client, unchanged, runs the whole workflow against ftm serve and the stand-in.

LiteLLM's fine-tuning functions (files, jobs, cancel, results) and its completion() call,
pointed at our servers with api_base: what a team already using LiteLLM would run.
"""

from __future__ import annotations

import base64
import json
import os
import time

import pytest

from fixtures_local import tiny_llama  # noqa: F401  (fixture)
from ftmanager.standin import standin
from ftmanager.serve import serve

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no fetch of its price list from the web
litellm = pytest.importorskip("litellm")

KEY = "sk-litellm-test"


def workflow(url: str, answer: str) -> None:
    """Upload, fine-tune from the alias, follow, list, chat with the result, read results, cancel."""
    where = {"custom_llm_provider": "openai", "api_base": url, "api_key": KEY}
    rows = [{"messages": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": answer}]}
            for i in range(10)]
    data = "".join(json.dumps(r) + "\n" for r in rows).encode()
    f = litellm.create_file(file=("train.jsonl", data), purpose="fine-tune", **where)
    job = litellm.create_fine_tuning_job(model="gpt-4o-mini", training_file=f.id, suffix="lite",
                                         hyperparameters={"n_epochs": 2, "batch_size": 5}, **where)
    deadline = time.time() + 180
    while job.status not in ("succeeded", "failed", "cancelled"):
        assert time.time() < deadline, job.status
        time.sleep(0.3)
        job = litellm.retrieve_fine_tuning_job(fine_tuning_job_id=job.id, **where)
    assert job.status == "succeeded", job.error
    assert job.fine_tuned_model.startswith("ft:gpt-4o-mini-2024-07-18:")
    assert job.id in [j.id for j in litellm.list_fine_tuning_jobs(**where).data]
    reply = litellm.completion(model=f"openai/{job.fine_tuned_model}", api_base=url, api_key=KEY, max_tokens=4,
                               temperature=0, messages=[{"role": "user", "content": "q3"}])
    assert reply.choices[0].message.content.strip()
    results = litellm.file_content(file_id=job.result_files[0], **where).content
    assert base64.b64decode(results).startswith(b"step,train_loss")
    other = litellm.create_fine_tuning_job(model="gpt-4o-mini", training_file=f.id,
                                           hyperparameters={"n_epochs": 40}, **where)
    assert litellm.cancel_fine_tuning_job(fine_tuning_job_id=other.id, **where).status == "cancelled"


def test_litellm_runs_the_workflow_against_the_standin():
    with standin(speed=100, api_key=KEY) as server:
        workflow(server.url, "Paris")


def test_litellm_runs_the_workflow_against_ftm_serve(ftm_home, tiny_llama):  # noqa: F811
    ftm_home.mkdir(parents=True, exist_ok=True)
    (ftm_home / "served_models.toml").write_text(
        f'[models."gpt-4o-mini-2024-07-18"]\nlocal = "{tiny_llama}"\n'
        'options = {quantize = false, device = "cpu", learning_rate = 0.05, lora_dropout = 0.0}\n')
    with serve(port=0, api_key=KEY, device="cpu") as server:
        workflow(server.url, "zz")
