"""`ftm eval` on preference held-out data: each model's chosen-over-rejected log-probability margin
through the local backend's scoring, stored as grades (prefers_chosen for every model,
preference_accuracy where a tuned model's margin beats its base's) and shown beside the scores."""

from __future__ import annotations

import pytest

from conftest import ftm
from fixtures_local import chat, tiny_llama, write_jsonl  # noqa: F401  (fixture)

pytest.importorskip("peft")

PAIRS = [("What is 2 plus 2?", "4", "five"), ("What is 3 plus 3?", "6", "seven"), ("Name a colour.", "red", "banana")]


def pair(question: str, chosen: str, rejected: str) -> dict:
    return {"input": {"messages": [{"role": "user", "content": question}]},
            "preferred_output": [{"role": "assistant", "content": chosen}],
            "non_preferred_output": [{"role": "assistant", "content": rejected}]}


def margins_by_hand(result_path, base_model) -> list[float]:
    from ftm_backends.local import LocalBackend

    out = []
    for question, chosen, rejected in PAIRS:
        sides = [[{"role": "user", "content": question}, {"role": "assistant", "content": a}] for a in (chosen, rejected)]
        (good, _), (bad, _) = LocalBackend().answer_logprobs(None, result_path, base_model, sides)
        out.append(good - bad)
    return out


def test_preference_accuracy_of_a_local_run_against_its_base(ftm_home, tmp_path, tiny_llama):  # noqa: F811
    train = write_jsonl(tmp_path / "train.jsonl", [chat(q, c) for q, c, _ in PAIRS] * 4)
    run = ftm("submit", train, "-b", "local", "-m", tiny_llama, "--epochs", "2", "--batch-size", "4",
              "--no-quantize", "-p", "device=cpu", "--wait", "--json", timeout=300).json()
    heldout = write_jsonl(tmp_path / "prefs.jsonl", [pair(*p) for p in PAIRS])
    result = ftm("eval", run["id"], "--data", heldout, "--baseline", "--max-new-tokens", "2", "--json", timeout=300)
    assert result.code == 0, result
    tuned, base = result.json()
    mine, theirs = margins_by_hand(run["result_path"], str(tiny_llama)), margins_by_hand(None, str(tiny_llama))
    assert mine != theirs  # the adapter is loaded for the run
    by_name = lambda evaluation: {g["grader"]: g["mean"] for g in evaluation["grades"]}  # noqa: E731
    assert by_name(tuned) == pytest.approx({"prefers_chosen": sum(m > 0 for m in mine) / 3,
                                            "preference_accuracy": sum(m > b for m, b in zip(mine, theirs)) / 3})
    assert by_name(base) == pytest.approx({"prefers_chosen": sum(b > 0 for b in theirs) / 3})
    assert [g["reference"] for g in tuned["generations"]] == ["4", "6", "red"]  # the chosen answers
    shown = ftm("eval", run["id"], "--data", heldout, "--max-new-tokens", "2", timeout=300)
    assert shown.code == 0 and "preference_accuracy" in shown.out


def test_a_local_dpo_run_beats_its_base_on_the_pairs_it_learned(ftm_home, tmp_path, tiny_llama):  # noqa: F811
    prefs = write_jsonl(tmp_path / "prefs.jsonl", [pair(*p) for p in PAIRS] * 4)
    run = ftm("submit", prefs, "-b", "local", "-m", tiny_llama, "--method", "dpo", "--beta", "0.5", "--epochs", "3",
              "--batch-size", "4", "--learning-rate-multiplier", "20", "--no-quantize", "-p", "device=cpu",
              "--wait", "--json", timeout=300)
    assert run.code == 0, run
    heldout = write_jsonl(tmp_path / "heldout.jsonl", [pair(*p) for p in PAIRS])
    tuned = ftm("eval", run.json()["id"], "--data", heldout, "--max-new-tokens", "2", "--json", timeout=300).json()[0]
    grades = {g["grader"]: g["mean"] for g in tuned["grades"]}
    assert grades["preference_accuracy"] == 1.0  # DPO widened every pair's margin past the base's
