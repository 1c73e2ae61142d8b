"""`ftm submit --backend local --wait` end to end: ledger, detached worker, tiny real model."""

from __future__ import annotations

import pytest

from conftest import ftm
from fixtures_local import tiny_llama  # noqa: F401  (fixture)

pytest.importorskip("peft")


def test_submit_local_wait_trains_and_records_the_model(ftm_home, chat_file, tiny_llama):  # noqa: F811
    res = ftm("submit", chat_file, "--backend", "local", "--model", tiny_llama, "--epochs", "2",
              "--batch-size", "4", "--no-quantize", "-p", "device=cpu", "--wait", "--json", timeout=300)
    assert res.code == 0, res
    run = res.json()
    assert run["status"] == "succeeded", res
    assert run["result_model"] == f"local:{run['id']}"
    shown = ftm("show", run["id"], "--json")
    assert shown.code == 0, shown
    assert "train_loss" in shown.out and f"local:{run['id']}:step-3" in shown.out


@pytest.mark.parametrize("flags, said", [
    (["--model", "gpt-4o-mini"], "gpt-4o-mini is an OpenAI model and cannot be trained locally"),
    (["--model", "ft:gpt-4o-mini-2024-07-18:acme::AbC123"], "is an OpenAI model"),
    (["--model", "/no/such/model"], "there is no model at /no/such/model"),
    (["--model", "HuggingFaceTB/SmolLM2-135M-Instruct", "-p", "lora_r=big"], "option lora_r must be a number"),
])
def test_submit_refuses_what_no_local_run_can_train_before_recording_anything(ftm_home, chat_file, flags, said):
    res = ftm("submit", chat_file, "--backend", "local", *flags)
    assert res.code == 1 and said in res.err, res
    assert len(res.err.strip().splitlines()) == 1 and res.err.startswith("Error: ")
    assert ftm("runs", "--json").json() == []
    assert not (ftm_home / "runs").exists() or not any((ftm_home / "runs").iterdir()), "no worker was started"
