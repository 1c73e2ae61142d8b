"""`ftm datasets validate` against OpenAI's cookbook checks, side by side, in one run.

    python bench/bench_validate.py            # 100,000 examples (+ 25,000 to show memory)
    python bench/bench_validate.py -n 20000   # quicker

It writes a generated chat JSONL (varied content, mixed lengths and turns), then runs each
contender in its own process and reads that process's peak RSS:
  baseline  the cookbook notebook "Data preparation and analysis for chat model fine-tuning",
            re-implemented: load every line, its 7 format checks, num_tokens_from_messages and
            num_assistant_tokens_from_messages with encoding.encode, the distributions, the
            too-long count and the billing estimate. Same encoding as ours.
  ftm       ftmanager.data.validate(): the full check set (every cookbook check, tools,
            tool_calls, weights, special tokens, duplicates, empty content, UTF-8, ...),
            one worker process per core for big files; "ftm-1proc" is the same in one process.
Both count with cl100k_base (model gpt-3.5-turbo-0125), so token counts must agree.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time

MODEL = "gpt-3.5-turbo-0125"
ENCODING = "cl100k_base"

SYSTEMS = [
    "You are a helpful assistant.",
    "You are a concise customer-support agent for Acme Corp. Answer politely, in at most three "
    "sentences, and never promise refunds without an order number.",
    "Answer in JSON with the keys \"answer\" and \"confidence\".",
    "You are a senior Python reviewer. Point out bugs, explain why they are bugs, and suggest a "
    "minimal fix. Prefer standard-library solutions. Quote the offending line.",
]
COMMON = (
    "the of and to a in is it you that he was for on are with as I his they be at one have this from "
    "or had by not word but what some we can out other were all there when up use your how said an "
    "each she which do their time if will way about many then them write would like so these her long "
    "make thing see him two has look more day could go come did number sound no most people my over "
    "know water than call first who may down side been now find model data training learning rate "
    "epoch batch token answer question capital city country python function error value list string "
    "return because however therefore example customer order refund shipping account password invoice"
).split()
SYLLABLES = ("ka ri to me na lo su vi de ra pen tor al ex in con ver sta tion ment able ing ly er "
             "pre pro tri qua zen mor lith gra phy bio neo cy ber ox an gel ium ics ard ous ful").split()
FOREIGN = ["café", "naïve", "résumé", "Zürich", "São", "München", "Kraków", "東京", "北京", "서울", "데이터",
           "модель", "данные", "año", "Größe", "ελληνικά", "😀", "—", "“quoted”", "…"]
CODE = [
    "def mean(xs):\n    if not xs:\n        raise ValueError('empty')\n    return sum(xs) / len(xs)\n",
    "for i in range(10):\n    print(i ** 2)\n",
    "SELECT id, total\n  FROM orders\n WHERE status = 'paid'\n ORDER BY total DESC LIMIT 10;\n",
    "const x = await fetch(url).then(r => r.json());\nconsole.log(x.items.length);\n",
]


def _pool(rng: random.Random, n_words: int = 30_000, size: int = 400_000) -> list[str]:
    """Words drawn with Zipf weights (common words first, then made-up ones), some with
    punctuation, numbers or non-English words: sampling it gives text that repeats like real text."""
    words = list(COMMON)
    while len(words) < n_words:
        words.append("".join(rng.choice(SYLLABLES) for _ in range(rng.randint(1, 4))))
    weights = [1 / rank**1.07 for rank in range(1, len(words) + 1)]
    pool = rng.choices(words, weights=weights, k=size)
    for i in range(size):
        roll = rng.random()
        if roll < 0.06:
            pool[i] += rng.choice([",", ",", ";", ":"])
        elif roll < 0.09:
            pool[i] = str(rng.randint(0, 99999))
        elif roll < 0.11:
            pool[i] = rng.choice(FOREIGN)
        elif roll < 0.16:
            pool[i] = pool[i].capitalize()
    return pool


def _sentence(rng: random.Random, pool: list[str]) -> str:
    text = " ".join(rng.choices(pool, k=rng.randint(4, 24)))
    return text[0].upper() + text[1:] + rng.choice([".", ".", ".", "?", "!", f" ({rng.random():.3f})."])


def _text(rng: random.Random, vocab: list[str], lo: int, hi: int) -> str:
    parts = [_sentence(rng, vocab) for _ in range(rng.randint(lo, hi))]
    if rng.random() < 0.15:
        parts.insert(rng.randrange(len(parts) + 1), "```\n" + rng.choice(CODE) + "```")
    if rng.random() < 0.1:
        parts = [f"{i}. {p}" for i, p in enumerate(parts, 1)]
    return " ".join(parts) if rng.random() < 0.6 else "\n\n".join(parts)


def generate(path: str, n: int, seed: int = 0) -> None:
    """n chat examples: 1-4 turns, short to long replies, a system prompt in most."""
    rng = random.Random(seed)
    vocab = _pool(rng)
    with open(path, "w", encoding="utf-8") as f:
        for _ in range(n):
            messages = [{"role": "system", "content": rng.choice(SYSTEMS)}] if rng.random() < 0.8 else []
            for _ in range(rng.choice((1, 1, 1, 2, 2, 3, 4))):
                messages.append({"role": "user", "content": _text(rng, vocab, 1, 4)})
                messages.append({"role": "assistant", "content": _text(rng, vocab, 1, rng.choice((2, 6, 15, 40)))})
            f.write(json.dumps({"messages": messages}, ensure_ascii=rng.random() < 0.5) + "\n")


# --- the baseline: OpenAI's cookbook, as published (plain loops, encode per value) ---------

def cookbook(path: str) -> dict:
    import tiktoken

    names = tiktoken.list_encoding_names()
    encoding = tiktoken.get_encoding(ENCODING + "_offline" if ENCODING + "_offline" in names else ENCODING)
    with open(path, "r", encoding="utf-8") as f:
        dataset = [json.loads(line) for line in f]

    format_errors: dict[str, int] = {}
    for ex in dataset:
        if not isinstance(ex, dict):
            format_errors["data_type"] = format_errors.get("data_type", 0) + 1
            continue
        messages = ex.get("messages", None)
        if not messages:
            format_errors["missing_messages_list"] = format_errors.get("missing_messages_list", 0) + 1
            continue
        for message in messages:
            if "role" not in message or "content" not in message:
                format_errors["message_missing_key"] = format_errors.get("message_missing_key", 0) + 1
            if any(k not in ("role", "content", "name", "function_call", "weight") for k in message):
                format_errors["message_unrecognized_key"] = format_errors.get("message_unrecognized_key", 0) + 1
            if message.get("role", None) not in ("system", "user", "assistant", "function"):
                format_errors["unrecognized_role"] = format_errors.get("unrecognized_role", 0) + 1
            content = message.get("content", None)
            function_call = message.get("function_call", None)
            if (not content and not function_call) or not isinstance(content, str):
                format_errors["missing_content"] = format_errors.get("missing_content", 0) + 1
        if not any(message.get("role", None) == "assistant" for message in messages):
            format_errors["example_missing_assistant_message"] = format_errors.get("example_missing_assistant_message", 0) + 1

    def num_tokens_from_messages(messages, tokens_per_message=3, tokens_per_name=1):
        num_tokens = 0
        for message in messages:
            num_tokens += tokens_per_message
            for key, value in message.items():
                num_tokens += len(encoding.encode(value))
                if key == "name":
                    num_tokens += tokens_per_name
        num_tokens += 3
        return num_tokens

    def num_assistant_tokens_from_messages(messages):
        num_tokens = 0
        for message in messages:
            if message["role"] == "assistant":
                num_tokens += len(encoding.encode(message["content"]))
        return num_tokens

    n_missing_system = n_missing_user = 0
    n_messages, convo_lens, assistant_lens = [], [], []
    for ex in dataset:
        messages = ex["messages"]
        if not any(message["role"] == "system" for message in messages):
            n_missing_system += 1
        if not any(message["role"] == "user" for message in messages):
            n_missing_user += 1
        n_messages.append(len(messages))
        convo_lens.append(num_tokens_from_messages(messages))
        assistant_lens.append(num_assistant_tokens_from_messages(messages))

    def distribution(values):
        ordered = sorted(values)
        return {q: ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))] for q in (5, 50, 95)}

    limit = 16385
    n_too_long = sum(length > limit for length in convo_lens)
    n_train = len(dataset)
    n_epochs = 3
    if n_train * n_epochs < 100:
        n_epochs = min(25, 100 // n_train)
    elif n_train * n_epochs > 25000:
        n_epochs = max(1, 25000 // n_train)
    billed = sum(min(limit, length) for length in convo_lens)
    return {
        "examples": n_train,
        "errors": sum(format_errors.values()),
        "tokens_total": sum(convo_lens),
        "tokens": distribution(convo_lens),
        "assistant": distribution(assistant_lens),
        "too_long": n_too_long,
        "billed_tokens": billed * n_epochs,
    }


def ours(path: str, workers: int | None = None) -> dict:
    from ftmanager.data import validate

    report = validate(path, model=MODEL, workers=workers)
    s = report.stats
    return {
        "examples": s["examples"],
        "errors": report.n_errors(),
        "tokens_total": s["tokens"]["total"],
        "exact": report.exact_tokens,
        "billed_tokens": s["billed_tokens"],
        "problems": report.counts,
    }


def run_one(which: str, path: str) -> None:
    """Child process: run one contender, print JSON with time and peak memory."""
    start, cpu = time.perf_counter(), os.times()
    result = {"baseline": cookbook, "ftm": ours, "ftm-1proc": lambda p: ours(p, workers=1)}[which](path)
    seconds, after = time.perf_counter() - start, os.times()
    cpu_seconds = sum(after[:4]) - sum(cpu[:4])  # user + system, this process and its workers
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    print(json.dumps({"seconds": seconds, "cpu_seconds": cpu_seconds, "rss_mb": own / 1024,
                      "worker_rss_mb": children / 1024, **result}))


def measure(which: str, path: str) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--child", which, path], capture_output=True, text=True, check=True
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-n", type=int, default=100_000, help="examples in the big file")
    parser.add_argument("--small", type=int, default=25_000, help="examples in the small file (memory check)")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return run_one(*args.child)
    with tempfile.TemporaryDirectory() as tmp:
        rows = []
        for n in (args.small, args.n):
            path = os.path.join(tmp, f"chat_{n}.jsonl")
            started = time.perf_counter()
            generate(path, n)
            size = os.path.getsize(path) / 2**20
            print(f"generated {n:,} examples ({size:,.0f} MB) in {time.perf_counter() - started:.1f} s", flush=True)
            for which in ("baseline", "ftm", "ftm-1proc"):
                rows.append((n, which, measure(which, path)))
                print(f"  {which:8} done in {rows[-1][2]['seconds']:.1f} s", flush=True)
        report(rows)


def report(rows: list) -> None:
    print(f"\ncpus: {os.cpu_count()}  load average now: {os.getloadavg()[0]:.2f} "
          "(other work on the machine slows both contenders; ftm's workers most)")
    print(f"{'examples':>9} {'contender':9} {'wall s':>7} {'examples/s':>11} {'CPU s':>7} {'examples/CPU s':>15} "
          f"{'peak RSS MB':>12} {'worker RSS MB':>14} {'tokens':>12}")
    for n, which, r in rows:
        print(f"{n:>9,} {which:9} {r['seconds']:>7.2f} {n / r['seconds']:>11,.0f} {r['cpu_seconds']:>7.2f} "
              f"{n / r['cpu_seconds']:>15,.0f} {r['rss_mb']:>12.0f} {r['worker_rss_mb']:>14.0f} {r['tokens_total']:>12,}")
    for n in sorted({n for n, _, _ in rows}):
        base, ftm, single = (r for m, _, r in rows if m == n)
        same = "same" if base["tokens_total"] == ftm["tokens_total"] == single["tokens_total"] else "DIFFERENT"
        print(f"{n:,} examples: ftm {base['seconds'] / ftm['seconds']:.2f}x the baseline's throughput "
              f"({base['cpu_seconds'] / ftm['cpu_seconds']:.2f}x per CPU second; in one process "
              f"{base['seconds'] / single['seconds']:.2f}x); {same} token totals")
    print("(both count 3 per message + role + content, + 3 per example: on plain chats the totals must agree)")


if __name__ == "__main__":
    main()
