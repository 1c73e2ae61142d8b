"""Perplexity in `ftm eval`: a local model's own log-probabilities of the reference answers, exactly
the tokens training labels; a hosted run's from its provider's validation loss, marked as such."""

from __future__ import annotations

import math

import pytest

from conftest import ftm
from fixtures_local import chat, tiny_llama, write_jsonl  # noqa: F401  (fixture)

pytest.importorskip("peft")

CONVERSATIONS = [
    chat("What is 2 plus 2?", "4").get("messages"),
    chat("Spell the word cat backwards, please.", "tac, which is cat spelt from its end", system="Be terse.")["messages"],
    # two turns: only the last answer is scored, the first one is context
    [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello there, friend"},
     {"role": "user", "content": "Bye"}, {"role": "assistant", "content": "Bye"}],
]


def plain_loss(model_dir, conversation) -> tuple[float, int]:
    """What a user computes by hand: transformers' own loss on the labels training would use."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ftm_backends.local.modeling import encoding as chats

    tok, model = AutoTokenizer.from_pretrained(model_dir), AutoModelForCausalLM.from_pretrained(model_dir)
    *before, answer = conversation
    masked = [{**m, "weight": 0} if m["role"] == "assistant" else m for m in before]
    enc = chats.encode(tok, {"messages": masked + [answer]}, 10_000)
    with torch.no_grad():
        loss = model(input_ids=torch.tensor([enc.input_ids]), labels=torch.tensor([enc.labels])).loss
    return float(loss), enc.n_trained


def test_local_perplexity_is_the_training_loss_of_the_answer_batched_or_not(tiny_llama):  # noqa: F811
    from ftm_backends.local import LocalBackend

    batched = LocalBackend().answer_logprobs(None, None, str(tiny_llama), CONVERSATIONS)
    alone = [LocalBackend().answer_logprobs(None, None, str(tiny_llama), [c])[0] for c in CONVERSATIONS]
    for (logprob, n), (logprob_alone, n_alone), conversation in zip(batched, alone, CONVERSATIONS):
        loss, n_trained = plain_loss(tiny_llama, conversation)
        answer = conversation[-1]["content"]
        # the tiny tokenizer has one token per character: the answer, its end-of-turn marker and newline
        assert n == n_alone == n_trained == len(answer) + 2
        assert -logprob / n == pytest.approx(loss, rel=1e-4)
        assert logprob == pytest.approx(logprob_alone, rel=1e-4)  # padding in a batch changes nothing


def test_eval_records_perplexity_and_bleu_of_a_local_run_and_its_base(ftm_home, tmp_path, chat_file, tiny_llama):  # noqa: F811
    run = ftm("submit", chat_file, "-b", "local", "-m", tiny_llama, "--epochs", "1", "--batch-size", "4",
              "--no-quantize", "-p", "device=cpu", "--wait", "--json", timeout=300).json()
    heldout = write_jsonl(tmp_path / "heldout.jsonl", [chat("What is 7 plus 7?", "14"), chat("What is 9 plus 9?", "18")])
    result = ftm("eval", run["id"], "--data", heldout, "--baseline", "--max-new-tokens", "4", "--json", timeout=300)
    assert result.code == 0, result
    tuned, base = result.json()
    for evaluation in (tuned, base):
        assert evaluation["perplexity_source"] == "reference_tokens"
        each = [g["perplexity"] for g in evaluation["generations"]]
        assert all(p > 1 for p in each)
        # over all tokens: the geometric mean of the examples' perplexities, both answers being equally long
        assert evaluation["perplexity"] == pytest.approx(math.exp(sum(map(math.log, each)) / len(each)))
        assert 0.0 <= evaluation["bleu"] <= 1.0
    assert tuned["perplexity"] != base["perplexity"]  # the adapter is loaded for the run, not for the base


def test_a_hosted_run_has_the_perplexity_of_its_validation_loss_said_so(ftm_home, tmp_path, chat_file):
    from ftmanager.backend import Progress
    from ftmanager.ledger import ledger

    run = ftm("submit", chat_file, "-b", "fake", "--wait", "--json").json()
    ledger().record(run["id"], Progress(status="succeeded", metrics=[{"step": 9, "valid_loss": 0.7},
                                                                       {"step": 10, "valid_loss": 0.5}]))
    heldout = write_jsonl(tmp_path / "heldout.jsonl", [chat("What is 1 plus 1?", "2")])
    tuned, base = ftm("eval", run["id"], "--data", heldout, "--baseline", "--json").json()
    assert tuned["perplexity"] == pytest.approx(math.exp(0.5)) and tuned["perplexity_source"] == "validation_loss"
    assert base["perplexity"] is None and base["perplexity_source"] is None  # no validation loss, no log-probs
    text = ftm("eval", run["id"], "--data", heldout).out
    assert f"{math.exp(0.5):.3g}*" in text and "validation loss" in text and "lower is better" in text
    compared = ftm("compare", run["id"], run["id"], "--json").json()["runs"][0]
    assert compared["eval.perplexity_source"] == "validation_loss"
