"""Using a local run from the command line: generate, chat and export what `ftm submit` trained."""

from __future__ import annotations

import json

import pytest

from conftest import ftm
from fixtures_local import tiny_llama  # noqa: F401  (fixture)

pytest.importorskip("torch")

ANSWER = "zz"


@pytest.fixture
def trained_run(ftm_home, tmp_path, tiny_llama):  # noqa: F811
    """A local run of the tiny model taught to answer everything with ANSWER, through `ftm submit`."""
    data = tmp_path / "zz.jsonl"
    data.write_text("".join(json.dumps({"messages": [{"role": "user", "content": f"q{i}"},
                                                      {"role": "assistant", "content": ANSWER}]}) + "\n"
                            for i in range(8)))
    result = ftm("submit", data, "-b", "local", "-m", tiny_llama, "--epochs", "10", "--batch-size", "4",
                 "--learning-rate", "0.05", "--no-quantize", "-p", "lora_dropout=0", "-p", "device=cpu",
                 "--seed", "7", "--wait", "--json", timeout=300)
    assert result.code == 0, result
    return result.json()


def test_a_local_run_is_recorded_like_a_hosted_one_and_its_model_answers(trained_run, tmp_path):
    run = trained_run
    assert run["status"] == "succeeded" and run["result_model"] == f"local:{run['id']}"
    assert run["resolved_hyperparameters"]["n_epochs"] == 10
    shown = ftm("show", run["id"], "--json").json()
    assert len(shown["checkpoints"]) == 10 and shown["metrics"][-1]["train_loss"] < shown["metrics"][0]["train_loss"]
    assert {"train_loss", "train_accuracy"} <= {k for m in shown["metrics"] for k, v in m.items() if v is not None}

    answered = ftm("generate", run["id"], "q1", "q5", "--max-new-tokens", "4")
    assert answered.code == 0, answered
    assert answered.out.splitlines() == [ANSWER, ANSWER]
    talked = ftm("chat", run["id"], "--max-new-tokens", "4", input="q2\nq3\n")
    assert talked.out.splitlines() == [ANSWER, ANSWER]

    out = tmp_path / "merged"
    assert ftm("export", run["id"], "-o", out).code == 0
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok, model = AutoTokenizer.from_pretrained(out), AutoModelForCausalLM.from_pretrained(out)
    ids = tok.apply_chat_template([{"role": "user", "content": "q7"}], add_generation_prompt=True, return_tensors="pt")
    ids = ids["input_ids"] if hasattr(ids, "keys") else ids
    new = model.generate(ids, max_new_tokens=3, do_sample=False)[0][ids.shape[1]:]
    assert tok.decode(new, skip_special_tokens=True) == ANSWER
    again = ftm("export", run["id"], "-o", out)
    assert again.code == 1 and "is not empty" in again.err


def test_a_run_without_a_model_cannot_generate(ftm_home, chat_file):
    run = ftm("submit", chat_file, "-b", "fake", "-m", "fake-slow", "--json").json()
    result = ftm("generate", run["id"], "hello")
    assert result.code == 1 and "has no model yet" in result.err
    assert len(result.err.strip().splitlines()) == 1


def synced_status(wanted: str, timeout: float = 120) -> str:
    """The run's status in the ledger after `ftm sync`, once it is `wanted` (or the timeout)."""
    import time

    deadline = time.time() + timeout
    while (status := ftm("sync", "--json").json()[0]["run"]["status"]) != wanted and time.time() < deadline:
        time.sleep(0.2)
    return status


def test_pause_resume_cancel_resume_a_local_run_from_the_command_line(ftm_home, chat_file, tiny_llama):  # noqa: F811
    run = ftm("submit", chat_file, "-b", "local", "-m", tiny_llama, "--epochs", "50", "--batch-size", "2",
              "--no-quantize", "-p", "device=cpu", "--json").json()
    assert synced_status("running") == "running"
    assert ftm("pause", run["id"]).code == 0
    assert synced_status("paused") == "paused"
    assert ftm("runs", "--json").json()[0]["status"] == "paused"
    again = ftm("pause", run["id"])
    assert again.code == 1 and "already paused" in again.err
    assert ftm("resume", run["id"]).code == 0
    assert ftm("show", run["id"], "--json").json()["status"] == "running"
    assert ftm("cancel", run["id"]).code == 0
    assert ftm("watch", run["id"]).code == 4  # cancelled
    shown = ftm("show", run["id"], "--json").json()
    assert shown["status"] == "cancelled" and shown["checkpoints"], "cancel saves a checkpoint"
    assert ftm("resume", run["id"]).code == 0
    watched = ftm("watch", run["id"], timeout=300)
    assert watched.code == 0, watched
    done = ftm("show", run["id"], "--json").json()
    assert done["status"] == "succeeded" and done["result_model"] == f"local:{run['id']}"
    assert [m["step"] for m in done["metrics"]] == list(range(1, done["total_steps"] + 1))
