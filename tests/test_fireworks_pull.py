"""`ftm pull` of a Fireworks run: the adapter the stand-in serves through signed URLs comes home,
then answers through `ftm generate` on a tiny Llama exactly as that adapter does loaded here."""

from __future__ import annotations

import json

import pytest

from conftest import ftm
from fixtures_local import tiny_llama  # noqa: F401  (a session fixture)
from ftmanager.standin import standin

ACCOUNT, PROMPT = "acme", "What is 3 plus 3?"


@pytest.fixture(scope="module")
def adapter(tiny_llama, tmp_path_factory):  # noqa: F811
    """A LoRA adapter on the tiny Llama whose weights change its answers (B is not zero)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(3)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_llama),
                           LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    out = tmp_path_factory.mktemp("fireworks-adapter")
    model.save_pretrained(out)
    return out


@pytest.fixture
def env(adapter, ftm_home, monkeypatch):
    with standin(speed=40, provider="fireworks", adapter=adapter) as srv:
        monkeypatch.setenv("FIREWORKS_BASE_URL", srv.url)
        monkeypatch.setenv("FIREWORKS_API_KEY", "fw-pull-key")
        monkeypatch.setenv("FIREWORKS_ACCOUNT_ID", ACCOUNT)
        monkeypatch.setenv("FTM_POLL_SCALE", "0.05")
        yield srv


def test_pull_brings_the_adapter_home_and_generate_answers_with_it(env, adapter, tiny_llama, chat_file, ftm_home):  # noqa: F811
    from ftm_backends.local import LocalBackend

    run = ftm("submit", chat_file, "--backend", "fireworks", "--wait", "--json").json()
    assert run["status"] == "succeeded", run
    before = ftm("generate", run["id"], PROMPT)
    assert before.code == 1 and "ftm pull" in before.err and before.err.count("\n") == 1
    pulled = ftm("pull", run["id"], "--json")
    assert pulled.code == 0, pulled
    home = ftm_home / "runs" / run["id"] / "adapter"
    assert pulled.json()["result_path"] == str(home)
    for name in ("adapter_config.json", "adapter_model.safetensors"):
        assert (home / name).read_bytes() == (adapter / name).read_bytes()
    unmapped = ftm("generate", run["id"], PROMPT)  # the table's local Llama 3.1 is not on this machine
    assert unmapped.code == 1 and "base_models.toml" in unmapped.err and unmapped.err.count("\n") == 1
    (ftm_home / "base_models.toml").write_text(f'[models."llama-3.1-8b-instruct"]\nlocal = "{tiny_llama}"\n')
    answered = ftm("generate", run["id"], PROMPT, "--max-new-tokens", "12")
    assert answered.code == 0, answered
    expected = LocalBackend().generate(None, str(adapter), str(tiny_llama), [[{"role": "user", "content": PROMPT}]],
                                       max_new_tokens=12)
    assert answered.out.rstrip("\n") == expected[0]
    events = [e["message"] for e in ftm("show", run["id"], "--json").json()["events"]]
    assert any(m.startswith("pulled the adapter from fireworks") for m in events)


def test_pull_merged_merges_the_adapter_into_its_base_here(env, adapter, tiny_llama, chat_file, ftm_home):  # noqa: F811
    from ftmanager import jobs

    run = jobs.submit(str(chat_file), "fireworks", wait=True)
    merged = jobs.pull(run["id"], merged=True)
    folder = ftm_home / "runs" / run["id"] / "merged"
    assert merged["result_path"] == str(folder) and (folder / "config.json").is_file()
    assert not (folder / "adapter_config.json").exists()  # a whole model, the adapter folded in
    assert json.loads((folder / "config.json").read_text())["num_hidden_layers"] == 2
    [answer] = jobs.generate(run["id"], [[{"role": "user", "content": PROMPT}]], max_new_tokens=4)
    assert isinstance(answer, str)  # the merged model answers as a base of its own
