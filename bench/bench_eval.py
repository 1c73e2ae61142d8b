"""`ftm eval`'s perplexity beside the plain loop a user writes: 1,000 held-out examples, one model.

ftm: LocalBackend.answer_logprobs (what `ftm eval` calls): examples sorted by length, batched,
right-padded, log-softmax only at the answer's tokens. Plain: the walk-throughs' loop, one example
at a time, `model(input_ids, labels=labels).loss` with the prompt masked by -100. Both load
SmolLM2-135M-Instruct from the same cache on the same machine, in one run; both load times are
counted. The two perplexities must agree (they score the same tokens).

Run: python bench/bench_eval.py [--examples 1000] [--batch-size 16]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as the local backend's worker does
ROOT = Path(__file__).resolve().parent.parent


def heldout(n: int) -> list[list[dict]]:
    """n chats shaped like examples/records_heldout.jsonl: its sentences, cycled with new names."""
    rows = [json.loads(line)["messages"] for line in (ROOT / "examples" / "records_heldout.jsonl").open()]
    rows += [json.loads(line)["messages"] for line in (ROOT / "examples" / "records.jsonl").open()]
    out = []
    for i in range(n):
        system, user, answer = rows[i % len(rows)]
        tag = f" (note {i})" if i >= len(rows) else ""  # different texts, similar lengths
        out.append([system, {**user, "content": user["content"] + tag}, answer])
    return out


def plain_loop(conversations: list[list[dict]]) -> tuple[float, float]:
    """Perplexity the walk-through way, and the seconds it took (model load included)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ftm_backends.local.modeling.loading import ensure_smollm2

    start = time.perf_counter()
    path = ensure_smollm2()
    tok, model = AutoTokenizer.from_pretrained(path), AutoModelForCausalLM.from_pretrained(path).eval()
    total, tokens = 0.0, 0
    for conversation in conversations:
        prompt = tok.apply_chat_template(conversation[:-1], add_generation_prompt=True, tokenize=False)
        full = tok.apply_chat_template(conversation, tokenize=False)
        ids = tok(full, add_special_tokens=False, return_tensors="pt")["input_ids"]
        labels = ids.clone()
        labels[:, :len(tok(prompt, add_special_tokens=False)["input_ids"])] = -100
        with torch.no_grad():
            loss = model(input_ids=ids, labels=labels).loss
        n = int((labels[:, 1:] != -100).sum())
        total, tokens = total + float(loss) * n, tokens + n
    return math.exp(total / tokens), time.perf_counter() - start


def ftm_eval(conversations: list[list[dict]], batch_size: int) -> tuple[float, float]:
    """Perplexity as `ftm eval` computes it, and the seconds it took (model load included)."""
    from ftm_backends.local.engine.scoring import answer_logprobs

    start = time.perf_counter()
    scored = answer_logprobs(None, None, conversations, batch_size=batch_size)
    seconds = time.perf_counter() - start
    return math.exp(-sum(lp for lp, _ in scored) / sum(n for _, n in scored)), seconds


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--examples", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args()
    import torch

    from ftm_backends.local.modeling.loading import ensure_smollm2

    ensure_smollm2()  # converted once, outside both timings
    conversations = heldout(args.examples)
    ours_ppl, ours_s = ftm_eval(conversations, args.batch_size)
    plain_ppl, plain_s = plain_loop(conversations)
    n = len(conversations)
    print(f"perplexity of {n} held-out answers, SmolLM2-135M-Instruct, CPU, {torch.get_num_threads()} threads, "
          "model load included")
    print(f"  ftm eval (sorted, batched {args.batch_size})  {n / ours_s:8.2f} examples/s  perplexity {ours_ppl:.4f}")
    print(f"  plain loop, one at a time       {n / plain_s:8.2f} examples/s  perplexity {plain_ppl:.4f}")
    print(f"  ftm is {plain_s / ours_s:.1f}x the plain loop")


if __name__ == "__main__":
    main()
