"""`ftm eval`: answer held-out prompts with each run's model (and the base model), score, record.

Scores: exact match, token F1 and ROUGE-L (longest common subsequence) on word tokens, and
chrF through sacrebleu, the maintained reference implementation.
"""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from pathlib import Path

from . import registry
from .catalog import add_dataset
from .errors import InvalidInput
from .ledger import ledger

_WORD = re.compile(r"\w+", re.UNICODE)


def _tokens(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def _normal(text: str) -> str:
    return " ".join(text.split()).lower()


def token_f1(output: str, reference: str) -> float:
    out, ref = _tokens(output), _tokens(reference)
    if not out or not ref:
        return float(out == ref)
    common = sum((Counter(out) & Counter(ref)).values())
    if not common:
        return 0.0
    precision, recall = common / len(out), common / len(ref)
    return 2 * precision * recall / (precision + recall)


def rouge_l(output: str, reference: str) -> float:
    """ROUGE-L F1: the longest common subsequence of word tokens."""
    out, ref = _tokens(output), _tokens(reference)
    if not out or not ref:
        return float(out == ref)
    previous = [0] * (len(ref) + 1)
    for word in out:
        current = [0]
        for j, ref_word in enumerate(ref):
            current.append(previous[j] + 1 if word == ref_word else max(previous[j + 1], current[j]))
        previous = current
    lcs = previous[-1]
    if not lcs:
        return 0.0
    precision, recall = lcs / len(out), lcs / len(ref)
    return 2 * precision * recall / (precision + recall)


def chrf(output: str, reference: str) -> float:
    from sacrebleu.metrics import CHRF

    return CHRF().sentence_score(output, [reference]).score / 100.0


def score(output: str, reference: str) -> dict:
    """All four scores of one answer against its reference, each in [0, 1]."""
    return {
        "exact_match": float(_normal(output) == _normal(reference)),
        "token_f1": token_f1(output, reference),
        "rouge_l": rouge_l(output, reference),
        "chrf": chrf(output, reference),
    }


def prompts_and_references(path: Path) -> list[tuple[list[dict], str]]:
    """(prompt messages, reference answer) for each held-out example: the last assistant turn."""
    from . import data

    pairs = []
    for line, example in data.read(path):
        messages = example["messages"]
        last = max((i for i, m in enumerate(messages) if m.get("role") == "assistant"), default=None)
        if last is None or not isinstance(messages[last].get("content"), str):
            raise InvalidInput(f"{path}:{line}: no assistant answer to score against",
                               "End each held-out example with the reference assistant message.")
        pairs.append(([_plain(m) for m in messages[:last]], messages[last]["content"]))
    if not pairs:
        raise InvalidInput(f"{path} has no examples", "Give a JSONL file of held-out chats.")
    return pairs


def _plain(message: dict) -> dict:
    return {k: v for k, v in message.items() if k != "weight"}


def run_evaluation(impl, target: dict, pairs: list, max_new_tokens: int) -> tuple[dict, list[dict]]:
    """Generate every answer in one batch call, then score each against its reference."""
    started = time.perf_counter()
    outputs = impl.generate(target["result_model"], target["result_path"], target["base_model"],
                            [prompt for prompt, _ in pairs], max_new_tokens=max_new_tokens)
    generations = []
    for i, ((prompt, reference), output) in enumerate(zip(pairs, outputs, strict=True)):
        generations.append({"example": i, "prompt": json.dumps(prompt, ensure_ascii=False),
                            "reference": reference, "output": output, **score(output, reference)})
    means = {k: sum(g[k] for g in generations) / len(generations)
             for k in ("exact_match", "token_f1", "rouge_l", "chrf")}
    return {**means, "n_examples": len(generations), "seconds": time.perf_counter() - started}, generations


def evaluate(refs: list[str], data_path: str | Path, baseline: bool = False,
             max_new_tokens: int = 128) -> list[dict]:
    """Answer held-out prompts with each run's model (and base models), score and record them."""
    pairs = prompts_and_references(Path(data_path))
    heldout = add_dataset(data_path, check=False)[0]
    targets = [ledger().run(ref) for ref in refs]
    if baseline:
        bases = {(r["backend"], r["base_model"]) for r in targets}
        targets += [{"id": None, "backend": b, "base_model": m, "result_model": None, "result_path": None}
                    for b, m in sorted(bases)]
    results = []
    for target in targets:
        if target["id"] and target["status"] != "succeeded":
            raise InvalidInput(f"run {target['id']} is {target['status']}", "Only succeeded runs can be evaluated.")
        summary, generations = run_evaluation(registry.get(target["backend"]), target, pairs, max_new_tokens)
        row = {"run_id": target["id"], "label": target["id"] or f"base:{target['backend']}:{target['base_model']}",
               "backend": target["backend"], "model_id": target["result_model"] or target["base_model"],
               "base_model": target["base_model"], "dataset_id": heldout["id"], **summary}
        row["id"] = ledger().add_evaluation(row, generations)
        results.append({**row, "generations": generations})
    return results
