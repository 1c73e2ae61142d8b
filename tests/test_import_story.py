"""The README's "Leaving OpenAI" story, from `ftm import openai`, offline end to end: history made
last year with the plain openai SDK (never through ftm) against the stand-in comes into the
ledger, is re-run on Together (pulled) and locally on a tiny Llama the base-model table maps in,
evaluated side by side with the still-live ft: model, and served under the old ft: name."""

from __future__ import annotations

import json
import time

import openai
import pytest
from conftest import ftm
from fixtures_local import tiny_llama  # noqa: F401  (fixture)
from test_pull import PROMPTS, adapter, env, local_answers, server  # noqa: F401  (fixtures)

import ftmanager
from ftmanager.standin import standin as openai_standin

pytest.importorskip("peft")
BASE = "gpt-4o-mini-2024-07-18"


@pytest.fixture
def table(env, ftm_home, tiny_llama):  # noqa: F811
    """The user's base-model table: both the gpt-4o-mini row's local model and Llama 3.1 8B are the tiny Llama."""
    ftm_home.mkdir(parents=True, exist_ok=True)
    (ftm_home / "base_models.toml").write_text(
        f'[models."gpt-4o-mini"]\nopenai = ["{BASE}", "gpt-4o-mini"]\nlocal = "{tiny_llama}"\n'
        f'instead = "llama-3.1-8b-instruct"\n\n[models."llama-3.1-8b-instruct"]\nlocal = "{tiny_llama}"\n')
    return env


def made_last_year(client: openai.OpenAI, chat_file) -> openai.types.fine_tuning.FineTuningJob:
    with open(chat_file, "rb") as fh:
        file_id = client.files.create(file=fh, purpose="fine-tune").id
    job = client.fine_tuning.jobs.create(model=BASE, training_file=file_id, suffix="support",
                                         method={"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 1}}})
    while (job := client.fine_tuning.jobs.retrieve(job.id)).status != "succeeded":
        assert job.status not in ("failed", "cancelled"), job
        time.sleep(0.1)
    return job


def test_leaving_openai_starts_from_ftm_import(table, chat_file, adapter, tiny_llama, monkeypatch, tmp_path):  # noqa: F811
    from ftmanager.serve import serve

    with openai_standin(speed=40) as hosted:
        monkeypatch.setenv("OPENAI_BASE_URL", hosted.url)
        monkeypatch.setenv("OPENAI_API_KEY", "sk-story")
        job = made_last_year(openai.OpenAI(api_key="sk-story", base_url=hosted.url), chat_file)

        imported = ftm("import", "openai", "--json")
        assert imported.code == 0, imported
        [adopted] = imported.json()["adopted"]
        parent = ftm("show", adopted["run_id"], "--json").json()
        assert (parent["provider_job_id"], parent["result_model"]) == (job.id, job.fine_tuned_model)

        rerun = ftm("rerun", parent["id"], "--backend", "together", "--wait", "--json")
        assert rerun.code == 0, rerun
        together = rerun.json()
        assert together["dataset_id"] == parent["dataset_id"] and ftm("pull", together["id"]).code == 0
        local = ftm("rerun", parent["id"], "--backend", "local", "--wait", "--json", timeout=600)
        assert local.code == 0, local
        local = local.json()
        assert local["status"] == "succeeded" and local["base_model"] == str(tiny_llama)

        heldout = tmp_path / "heldout.jsonl"
        heldout.write_text(json.dumps({"messages": [{"role": "user", "content": PROMPTS[0]},
                                                    {"role": "assistant", "content": "6"}]}) + "\n")
        scored = ftmanager.evaluate([parent["id"], together["id"], local["id"]], heldout, max_new_tokens=12)
        assert [s["model_id"] for s in scored][0] == job.fine_tuned_model  # the still-live ft: model answered
        assert all(len(s["generations"]) == 1 for s in scored)

    from ftmanager.ledger import ledger

    # two re-runs hold weights now: the old name answers with the one chosen, as `ftm serve --alias` records it
    ledger().set_model_alias(job.fine_tuned_model, together["id"])
    expected = local_answers(adapter, tiny_llama)
    with serve(port=0, api_key="sk-serve", device="cpu") as server:  # noqa: F811
        client = openai.OpenAI(base_url=server.url, api_key="sk-serve")
        reply = client.chat.completions.create(model=job.fine_tuned_model, max_tokens=12, temperature=0,
                                               messages=[{"role": "user", "content": PROMPTS[0]}])
        assert reply.choices[0].message.content.strip() == expected[0]  # the old name, answered at home
