"""`ftm serve` trains DPO jobs as OpenAI's API does: a preference file and method type dpo become
a local DPO run (beta recorded, "auto" resolved), reported through the API like an SFT job, its
model answering chat; and OpenAI's recommended SFT-then-DPO, DPO on this server's own ft: model, a
chain link on top of the SFT job's run that `ftm rerun` re-runs link by link.

Real local training of the tiny Llama (two steps a job), the openai SDK over HTTP on 127.0.0.1.
"""

from __future__ import annotations

import json

import httpx
import jsonschema
import openai
import pytest

from conftest import ftm
from fixtures_local import tiny_llama  # noqa: F401  (fixture)
from ftmanager.ledger import ledger
from ftmanager.serve import serve
from test_standin_spec import SPEC_PATH
from test_serve_jobs import BASE, KEY, rows, tiny_table, wait  # noqa: F401  (fixture)

pytest.importorskip("peft")

def pairs(n: int = 8) -> bytes:
    """Preference pairs in OpenAI's format: the answer 'zz' preferred over 'qq'."""
    return "".join(json.dumps({"input": {"messages": [{"role": "user", "content": f"say {i}"}]},
                               "preferred_output": [{"role": "assistant", "content": "zz"}],
                               "non_preferred_output": [{"role": "assistant", "content": "qq"}]}) + "\n"
                   for i in range(n)).encode()


def dpo(**hp) -> dict:
    return {"type": "dpo", "dpo": {"hyperparameters": {"n_epochs": 1, "batch_size": 4, **hp}}}


def assert_spec_job(server, job_id: str) -> None:
    """The job as sent, valid against OpenAI's FineTuningJob schema (method.dpo included)."""
    spec = json.loads(SPEC_PATH.read_text())
    sent = httpx.get(f"{server.url}/fine_tuning/jobs/{job_id}", headers={"Authorization": f"Bearer {KEY}"}).json()
    schema = {"$ref": "#/components/schemas/FineTuningJob", "components": spec["components"]}
    errors = [f"{list(e.path)}: {e.message}" for e in jsonschema.Draft4Validator(schema).iter_errors(sent)]
    assert not errors and sent["method"]["dpo"]["hyperparameters"]["beta"] == 0.1, errors


def finished(c, job_id: str):
    job = wait(lambda: (j := c.fine_tuning.jobs.retrieve(job_id)).status in ("succeeded", "failed") and j,
               timeout=240)
    assert job.status == "succeeded", job.error
    return job


def test_a_dpo_job_trains_reports_and_answers_and_dpo_runs_on_an_sft_model(tiny_table, ftm_home):
    with serve(port=0, api_key=KEY, device="cpu") as server:
        c = openai.OpenAI(base_url=server.url, api_key=KEY, max_retries=0)
        prefs = c.files.create(file=("prefs.jsonl", pairs()), purpose="fine-tune")
        chats = c.files.create(file=("chats.jsonl", rows("zz")), purpose="fine-tune")
        job = c.fine_tuning.jobs.create(model=BASE, training_file=prefs.id, method=dpo(beta=0.1))
        sft = c.fine_tuning.jobs.create(model=BASE, training_file=chats.id, suffix="sft", method={
            "type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 1, "batch_size": 5}}})
        assert job.method.type == "dpo" and job.method.dpo.hyperparameters.beta == 0.1

        job = finished(c, job.id)
        run = ledger().run(server.state.run_ids[job.id])
        assert run["hyperparameters"]["method"] == "dpo" and run["hyperparameters"]["beta"] == 0.1
        assert job.method.type == "dpo" and job.method.dpo.hyperparameters.n_epochs == 1
        assert_spec_job(server, job.id)
        metrics = [e.data for e in c.fine_tuning.jobs.list_events(job.id).data if e.type == "metrics"]
        assert metrics[0]["step"] == metrics[0]["total_steps"] == 2 and "train_loss" in metrics[0]
        assert c.fine_tuning.jobs.checkpoints.list(job.id).data
        said = c.chat.completions.create(model=job.fine_tuned_model, max_tokens=3,
                                         messages=[{"role": "user", "content": "say 1"}])
        assert said.choices[0].message.content is not None and said.model == job.fine_tuned_model

        sft = finished(c, sft.id)
        more = c.fine_tuning.jobs.create(model=sft.fine_tuned_model, training_file=prefs.id, method=dpo(beta="auto"))
        more = finished(c, more.id)
        assert more.method.dpo.hyperparameters.beta == 0.1  # "auto", resolved as the run used it
        assert more.fine_tuned_model.startswith(f"ft:{BASE}:ftm::")  # named after the base, as OpenAI names it
        chained, sft_run = ledger().run(server.state.run_ids[more.id]), server.state.run_ids[sft.id]
        upstream = [e["data"] for e in ledger().events(chained["id"]) if "upstream_run_id" in (e["data"] or {})]
        assert upstream == [{"upstream_run_id": sft_run}] and chained["base_run_id"] == sft_run  # a chain link
        assert chained["hyperparameters"]["beta"] == "auto" and chained["base_model"] == f"local:{sft_run}"
        said = c.chat.completions.create(model=more.fine_tuned_model, max_tokens=3,
                                         messages=[{"role": "user", "content": "say 1"}])
        assert said.choices[0].message.content is not None
    with serve(port=0, api_key=KEY, device="cpu") as again:  # the method outlives a restart
        c = openai.OpenAI(base_url=again.url, api_key=KEY, max_retries=0)
        assert c.fine_tuning.jobs.retrieve(job.id).method.type == "dpo"
        assert c.fine_tuning.jobs.retrieve(sft.id).method.type == "supervised"
    again = ftm("rerun", chained["id"], "-b", "fake", "--wait", "--json")  # the chain, link by link
    assert again.code == 0, again
    link = ledger().run(again.json()["base_run_id"])
    assert link["parent_run_id"] == sft_run and link["status"] == again.json()["status"] == "succeeded"
