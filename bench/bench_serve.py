"""Chat through `ftm serve` beside a plain transformers `generate` loop, on a fine-tuned SmolLM2-135M.

1. Fine-tune: examples/capitals.jsonl (20 examples, 1 epoch, batch 4, plain LoRA on CPU)
   through `ftm serve` itself, with the openai SDK (skipped when the bench's FTM_HOME already
   holds the model: --retrain to train again).
2. `ftm serve` (a separate process, over loopback, the SDK as client): one client sending
   requests one after another (requests/s), time to first token of streamed requests, and
   --clients concurrent clients (the server batches requests that arrive together).
3. The same model (base + the same adapter, merged) in this process: a plain loop of
   model.generate, one request at a time (requests/s and time to first token, from a
   streamer), and the whole set as one padded generate batch, for reference.

Greedy decoding, --max-tokens new tokens at most, the same prompts everywhere.
Run: python bench/bench_serve.py [--requests 16] [--clients 8] [--max-tokens 32] [--retrain]
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HOME = ROOT / "bench" / "out" / "serve-home"  # SmolLM2's safetensors cache and the run live here
BASE = "gpt-4o-mini-2024-07-18"
SMOLLM2 = "HuggingFaceTB/SmolLM2-135M-Instruct"
COUNTRIES = ["Peru", "Kenya", "Norway", "Chile", "Vietnam", "Egypt", "Canada", "Poland", "Ghana",
             "Nepal", "Cuba", "Iraq", "Laos", "Mali", "Oman", "Togo"]


def prompts(n: int) -> list[list[dict]]:
    return [[{"role": "system", "content": "Answer in JSON."},
             {"role": "user", "content": f"What is the capital of {COUNTRIES[i % len(COUNTRIES)]}?"}]
            for i in range(n)]


def start_server(env: dict) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, "-m", "ftmanager", "serve", "--port", "0", "--device", "cpu",
                             "--api-key", "sk-bench"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            text=True, env=env)
    url = re.search(r"(http://\S+/v1)", proc.stdout.readline()).group(1)
    return proc, url


def fine_tuned(client, retrain: bool) -> str:
    """The ft: model of an earlier bench run, or a new one trained now."""
    made = [m.id for m in client.models.list() if m.id.startswith(f"ft:{BASE}:") and "ckpt" not in m.id]
    if made and not retrain:
        return made[-1]
    upload = client.files.create(file=open(ROOT / "examples" / "capitals.jsonl", "rb"), purpose="fine-tune")
    t0 = time.time()
    job = client.fine_tuning.jobs.create(model=BASE, training_file=upload.id, suffix="bench", method={
        "type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 1, "batch_size": 4}}})
    while job.status not in ("succeeded", "failed", "cancelled"):
        time.sleep(2)
        job = client.fine_tuning.jobs.retrieve(job.id)
    if job.status != "succeeded":
        sys.exit(f"fine-tuning {job.status}: {job.error}")
    print(f"fine-tuned {job.fine_tuned_model} through ftm serve in {time.time() - t0:.0f} s")
    return job.fine_tuned_model


def one(client, model: str, messages: list, max_tokens: int) -> tuple[float, float, int]:
    """(seconds to the first content chunk, seconds in all, completion pieces) of a streamed request."""
    t0 = time.perf_counter()
    first, pieces = None, 0
    stream = client.chat.completions.create(model=model, messages=messages, max_tokens=max_tokens,
                                            temperature=0, stream=True)
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            first = first or time.perf_counter() - t0
            pieces += 1
    return first or 0.0, time.perf_counter() - t0, pieces


def served(url: str, model: str, args) -> dict:
    import openai

    client = openai.OpenAI(base_url=url, api_key="sk-bench", max_retries=0, timeout=600)
    chats = prompts(args.requests)
    one(client, model, chats[0], args.max_tokens)  # loads the base and the adapter
    t0 = time.perf_counter()
    for chat in chats:
        client.chat.completions.create(model=model, messages=chat, max_tokens=args.max_tokens, temperature=0)
    seq = time.perf_counter() - t0
    ttft = [one(client, model, chat, args.max_tokens)[0] for chat in chats[:4]]
    results: list = []
    t0 = time.perf_counter()
    threads = [threading.Thread(target=lambda i=i: results.extend(
        one(client, model, chat, args.max_tokens) for chat in chats[i::args.clients])) for i in range(args.clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    conc = time.perf_counter() - t0
    return {"seq_rps": len(chats) / seq, "ttft": statistics.median(ttft),
            "conc_rps": len(chats) / conc, "conc_ttft": statistics.median(r[0] for r in results),
            "conc_latency": statistics.median(r[1] for r in results)}


class FirstToken:
    """A streamer that notes when generate() hands over its first new token."""

    def __init__(self):
        self.calls, self.at = 0, None

    def put(self, value):
        self.calls += 1
        if self.calls == 2:  # the first call carries the prompt
            self.at = time.perf_counter()

    def end(self):
        pass


def plain(run: dict, args) -> dict:
    """The same model in a plain transformers loop (base + adapter merged, as export does)."""
    import torch
    from ftm_backends.local.infer import load

    tok, model, _ = load(run["result_path"], run["base_model"], device="cpu")
    tok.padding_side = "left"
    texts = [tok.apply_chat_template(c, tokenize=False, add_generation_prompt=True) for c in prompts(args.requests)]

    def gen(batch: list[str], streamer=None):
        enc = tok(batch, return_tensors="pt", padding=True, add_special_tokens=False)
        with torch.no_grad():
            model.generate(**enc, max_new_tokens=args.max_tokens, do_sample=False,
                           pad_token_id=tok.pad_token_id, streamer=streamer)

    gen(texts[:1])
    t0 = time.perf_counter()
    for text in texts:
        gen([text])
    seq = time.perf_counter() - t0
    ttft = []
    for text in texts[:4]:
        s, start = FirstToken(), time.perf_counter()
        gen([text], s)
        ttft.append(s.at - start)
    t0 = time.perf_counter()
    gen(texts)
    return {"seq_rps": len(texts) / seq, "ttft": statistics.median(ttft),
            "batch_rps": len(texts) / (time.perf_counter() - t0)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=16)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--retrain", action="store_true")
    args = ap.parse_args()
    HOME.mkdir(parents=True, exist_ok=True)
    (HOME / "served_models.toml").write_text(
        f'[models."{BASE}"]\nlocal = "{SMOLLM2}"\noptions = {{quantize = false, device = "cpu", max_length = 256}}\n')
    os.environ["FTM_HOME"] = str(HOME)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    sys.path.insert(0, str(ROOT))
    import openai

    proc, url = start_server(dict(os.environ))
    try:
        model = fine_tuned(openai.OpenAI(base_url=url, api_key="sk-bench", max_retries=0), args.retrain)
        srv = served(url, model, args)
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    import ftmanager

    ref = plain(ftmanager.show("run-" + model.rsplit(":", 1)[1]), args)
    report(model, srv, ref, args)


def report(model: str, srv: dict, ref: dict, args) -> None:
    print(f"\n{model}: {args.requests} chats, <= {args.max_tokens} new tokens, greedy, CPU "
          f"({os.cpu_count()} cores, load {os.getloadavg()[0]:.1f})")
    print(f"{'':44}{'requests/s':>11}{'TTFT (median)':>15}")
    print(f"{'transformers generate loop, one at a time':44}{ref['seq_rps']:>11.2f}{ref['ttft'] * 1000:>12.0f} ms")
    print(f"{'ftm serve, one client, one at a time':44}{srv['seq_rps']:>11.2f}{srv['ttft'] * 1000:>12.0f} ms")
    print(f"{f'ftm serve, {args.clients} concurrent clients (batched)':44}{srv['conc_rps']:>11.2f}"
          f"{srv['conc_ttft'] * 1000:>12.0f} ms   (median latency {srv['conc_latency']:.2f} s)")
    print(f"{'transformers, all in one padded batch':44}{ref['batch_rps']:>11.2f}{'-':>15}")


if __name__ == "__main__":
    main()
