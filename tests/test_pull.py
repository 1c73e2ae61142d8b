"""`ftm pull`: what a Together run trained, brought home through the official SDK's download from
ftm's Together stand-in (a real .tar.zst of an adapter trained-by-nobody on the tiny Llama), then
used like a local run's adapter: generate, chat, eval, export and `ftm serve`, on the local
model the base-model table maps its base to. A killed pull leaves nothing half-written.
"""

from __future__ import annotations

import json
import sqlite3

import openai
import pytest
from conftest import ftm
from fixtures_local import tiny_llama  # noqa: F401  (fixture)
from test_openai_cli import spawn, wait_until

from ftmanager.standin import standin as openai_standin
from ftmanager.standin.together import standin

pytest.importorskip("peft")

MODEL = "meta-llama/Meta-Llama-3.1-8B-Instruct-Reference"
NAMED_BASE = "meta-llama/Meta-Llama-3.1-8B-Instruct"  # what the adapter's config says it was trained on
FAST = {"pending": 0.1, "queued": 0.1, "step": 0.05, "compressing": 0.05, "uploading": 0.05}
PROMPTS = ["What is 3 plus 3?", "Hello"]
DOWNLOAD = ("GET", "/finetune/download")


@pytest.fixture(scope="module")
def adapter(tmp_path_factory, tiny_llama):  # noqa: F811
    """A LoRA adapter on the tiny Llama with random (non-zero) weights: it changes every answer."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    config = LoraConfig(r=4, lora_alpha=16, target_modules=["q_proj", "v_proj", "down_proj"],
                        init_lora_weights=False, task_type="CAUSAL_LM")
    out = tmp_path_factory.mktemp("provider") / "adapter"
    get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_llama), config).save_pretrained(out)
    settings = json.loads((out / "adapter_config.json").read_text())
    (out / "adapter_config.json").write_text(json.dumps({**settings, "base_model_name_or_path": NAMED_BASE}))
    return out


@pytest.fixture(scope="module")
def server(adapter, tiny_llama):  # noqa: F811
    with standin(speed=40, adapter=adapter, merged=tiny_llama) as srv:
        yield srv


@pytest.fixture
def env(server, ftm_home, monkeypatch, tmp_path):
    monkeypatch.setenv("TOGETHER_BASE_URL", server.base_url)
    monkeypatch.setenv("TOGETHER_API_KEY", "tg-pull")
    monkeypatch.setenv("FTM_POLL_SCALE", "0.02")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hub-cache"))  # no base model from anywhere else
    server.faults.clear()
    server.requests.clear()
    server.service.phases.update(FAST)
    return server


@pytest.fixture
def mapped(env, ftm_home, tiny_llama):  # noqa: F811
    """The user's base-model table: Llama 3.1 8B is the tiny Llama on this machine."""
    ftm_home.mkdir(parents=True, exist_ok=True)
    (ftm_home / "base_models.toml").write_text(f'[models."llama-3.1-8b-instruct"]\nlocal = "{tiny_llama}"\n')
    return env


def together_run(chat_file, *flags) -> dict:
    result = ftm("submit", chat_file, "-b", "together", "-m", MODEL, "--epochs", "1", *flags, "--wait", "--json")
    assert result.code == 0, result
    return result.json()


def local_answers(adapter_dir, base) -> list[str]:
    """What the local backend answers with this adapter (None: the bare base)."""
    from ftm_backends.local import LocalBackend

    return LocalBackend().generate(None, adapter_dir and str(adapter_dir), str(base),
                                   [[{"role": "user", "content": p}] for p in PROMPTS], max_new_tokens=12)


def test_a_pulled_adapter_answers_like_a_local_runs_in_generate_chat_eval_and_export(
        mapped, chat_file, adapter, tiny_llama, ftm_home, tmp_path):  # noqa: F811
    run = together_run(chat_file)
    result = ftm("pull", run["id"], "--json")
    assert result.code == 0, result
    pulled = result.json()
    where = ftm_home / "runs" / run["id"] / "adapter"
    assert pulled["result_path"].startswith(str(where))
    got = (where / "adapter" / "adapter_model.safetensors").read_bytes()
    assert got == (adapter / "adapter_model.safetensors").read_bytes()
    [(stored,)] = sqlite3.connect(ftm_home / "ftm.db").execute("SELECT result_path FROM runs").fetchall()
    assert stored == f"runs/{run['id']}/adapter/adapter"  # relative under FTM_HOME, as the ledger keeps paths
    events = [e["message"] for e in ftm("show", run["id"], "--json").json()["events"]]
    assert any(m.startswith(f"pulled the adapter from together into runs/{run['id']}/adapter") for m in events)

    expected = local_answers(adapter, tiny_llama)
    assert expected != local_answers(None, tiny_llama)  # the adapter is what answers
    said = ftm("generate", run["id"], *PROMPTS, "--max-new-tokens", "12")
    assert said.code == 0, said
    assert said.out == "".join(f"{answer}\n" for answer in expected)
    chatted = ftm("chat", run["id"], "--max-new-tokens", "12", input=PROMPTS[0] + "\n")
    assert chatted.out == f"{expected[0]}\n"

    import ftmanager

    heldout = tmp_path / "heldout.jsonl"
    heldout.write_text(json.dumps({"messages": [{"role": "user", "content": PROMPTS[0]},
                                                {"role": "assistant", "content": "6"}]}) + "\n")
    [scored] = ftmanager.evaluate([run["id"]], heldout, max_new_tokens=12)
    assert scored["generations"][0]["output"] == expected[0] and scored["perplexity_source"] == "reference_tokens"
    out = ftmanager.export(run["id"], tmp_path / "exported", merge=False)
    assert (out / "adapter_model.safetensors").read_bytes() == got


def test_ftm_serve_answers_with_a_pulled_rerun_under_its_own_name_and_its_openai_parents(
        mapped, chat_file, adapter, tiny_llama, monkeypatch):  # noqa: F811
    from ftmanager.serve import serve

    with openai_standin(speed=40) as hosted:
        monkeypatch.setenv("OPENAI_BASE_URL", hosted.url)
        monkeypatch.setenv("OPENAI_API_KEY", "sk-pull")
        parent = ftm("submit", chat_file, "-b", "openai", "--epochs", "1", "--suffix", "app", "--wait", "--json").json()
    rerun = ftm("rerun", parent["id"], "--backend", "together", "--wait", "--json")
    assert rerun.code == 0, rerun
    child = rerun.json()
    assert child["base_model"] == MODEL and "model=" + MODEL in rerun.err  # mapped through the base-model table
    assert ftm("pull", child["id"]).code == 0
    expected = local_answers(adapter, tiny_llama)
    with serve(port=0, api_key="sk-serve", device="cpu") as server:
        client = openai.OpenAI(base_url=server.url, api_key="sk-serve")
        listed = {m.id for m in client.models.list()}
        for name in (child["result_model"], parent["result_model"]):
            assert name in listed
            reply = client.chat.completions.create(model=name, messages=[{"role": "user", "content": PROMPTS[0]}],
                                                   max_tokens=12, temperature=0)
            assert reply.choices[0].message.content.strip() == expected[0]


def test_a_base_model_not_on_this_machine_is_one_line_with_the_fix(env, chat_file, ftm_home):
    run = together_run(chat_file)
    pulled = ftm("pull", run["id"])
    assert pulled.code == 0 and pulled.err.startswith("Note: the base model meta-llama/Llama-3.1-8B-Instruct is not")
    said = ftm("generate", run["id"], "Hello")
    assert said.code == 1 and len(said.err.strip().splitlines()) == 1
    assert "the base model meta-llama/Llama-3.1-8B-Instruct is not on this machine" in said.err
    assert "hf download meta-llama/Llama-3.1-8B-Instruct" in said.err and "base_models.toml" in said.err


def test_a_killed_pull_leaves_nothing_behind_and_a_pull_downloads_once(env, chat_file, ftm_home):
    run = together_run(chat_file)
    env.faults.add("slow", *DOWNLOAD, delay=10)  # outlasts the kill, not the server
    proc = spawn("pull", run["id"])
    wait_until(lambda: env.requests[DOWNLOAD] == 1)  # the download has begun ...
    proc.kill()  # ... and ftm dies in the middle of it
    proc.wait()
    assert ftm("show", run["id"], "--json").json()["result_path"] is None
    assert not (ftm_home / "runs" / run["id"] / "adapter").exists()
    assert [p.name for p in (ftm_home / "runs" / run["id"]).glob(".ftm-partial-*")]  # what the kill left ...
    assert ftm("pull", run["id"]).code == 0
    assert not list((ftm_home / "runs" / run["id"]).glob(".ftm-partial-*"))  # ... the next pull cleared
    assert ftm("pull", run["id"]).code == 0 and env.requests[DOWNLOAD] == 2  # nothing downloaded twice


def test_merged_weights_are_pulled_as_a_whole_model(mapped, chat_file, tiny_llama, ftm_home):  # noqa: F811
    run = together_run(chat_file)
    pulled = ftm("pull", run["id"], "--merged", "--json").json()
    assert (ftm_home / "runs" / run["id"] / "merged").is_dir() and pulled["result_path"].endswith(tiny_llama.name)
    said = ftm("generate", run["id"], *PROMPTS, "--max-new-tokens", "12")
    assert said.out == "".join(f"{a}\n" for a in local_answers(None, tiny_llama))  # the stand-in's merged model is the base


def test_only_a_succeeded_run_of_a_provider_that_gives_weights_is_pulled(env, chat_file):
    fake = ftm("submit", chat_file, "-b", "fake", "--wait", "--json").json()
    refused = ftm("pull", fake["id"])
    assert refused.code == 1 and "the fake backend gives no weights to download" in refused.err
    env.service.phases["queued"] = 60.0
    waiting = ftm("submit", chat_file, "-b", "together", "-m", MODEL, "--json").json()
    early = ftm("pull", waiting["id"])
    assert early.code == 1 and "has no model yet" in early.err and env.requests[DOWNLOAD] == 0
