"""Chat through ftm's model pool beside plain transformers, on a fine-tuned SmolLM2-135M (CPU).

1. Fine-tune: examples/capitals.jsonl (20 examples, 1 epoch, batch 4, plain LoRA) through
   `ftm serve` itself with the openai SDK (skipped when the bench's FTM_HOME already holds the
   model: --retrain to train again).
2. `ftm serve` (its own process, loopback, the openai SDK as client, streamed): one client
   sending requests one after another, then --clients concurrent clients; its peak memory.
3. The pool in a process of its own (ftm_backends.local.engine.pool, what `ftm serve`, `generate`,
   `chat` and `eval` share): the same two measures with the same adapter, then --clients
   clients where every request has a different adapter (copies of the fine-tuned one with
   rescaled weights: distinct adapters, the same arithmetic as distinct fine-tunes); and
   `ftm eval`'s generation, LocalBackend.generate of every prompt at once against one call per
   prompt (answers must agree).
4. What a user would pick instead, in a process of its own: the same model as `ftm export
   --merge` writes it, loaded with transformers alone, in a plain `generate` loop, one request
   at a time, and all the chats as one padded generate batch.
5. --transformers-serve DEPS: `transformers serve --continuous-batching` on the merged model,
   driven like ftm serve (fastapi, its one missing dependency, from a folder of its own:
   `pip install --target DEPS fastapi`).

Greedy decoding, at most --max-tokens new tokens, the same chats everywhere; every measure is
taken --passes times and shown as its range. Each contender runs with its own OpenMP settings
(transformers: libgomp's defaults; ftm: the pool's bounded spin), as a user would run it. Ratios are against the plain loop (1 client) and
the padded batch (many clients).
Run: python bench/bench_serve.py [--requests 16] [--clients 8] [--max-tokens 32] [--passes 2]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
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


def chats(n: int) -> list[list[dict]]:
    return [[{"role": "system", "content": "Answer in JSON."},
             {"role": "user", "content": f"What is the capital of {COUNTRIES[i % len(COUNTRIES)]}?"}]
            for i in range(n)]


def clients(n_clients: int, jobs: list, run) -> tuple[float, list]:
    """Run jobs spread over n_clients threads, each one after another: (seconds, results)."""
    results: list = []
    threads = [threading.Thread(target=lambda i=i: results.extend(run(j) for j in jobs[i::n_clients]))
               for i in range(n_clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - t0, results


def rates(args, one, jobs: list | None = None, alone: bool = True) -> dict:
    """`one(job)` -> (seconds to first text, seconds in all), run by 1 client (when alone) and by many:
    requests/s and the median time to first text of each."""
    jobs = jobs or list(range(args.requests))
    one(jobs[0])  # warm: loads models and adapters
    out = {}
    if alone:
        seq, firsts = clients(1, jobs, one)
        out.update(seq_rps=len(jobs) / seq, ttft=statistics.median(f for f, _ in firsts))
    conc, many = clients(args.clients, jobs, one)
    return {**out, "conc_rps": len(jobs) / conc, "conc_ttft": statistics.median(f for f, _ in many)}


# --- 2. and 5.: a server, through the openai SDK --------------------------------------------


def served(url: str, model: str, args, key: str = "sk-bench") -> dict:
    import openai

    client = openai.OpenAI(base_url=url, api_key=key, max_retries=0, timeout=600)
    msgs = chats(args.requests)

    def one(i: int) -> tuple[float, float]:
        t0, first = time.perf_counter(), None
        stream = client.chat.completions.create(model=model, messages=msgs[i], max_tokens=args.max_tokens,
                                                temperature=0, stream=True)
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content and first is None:
                first = time.perf_counter() - t0
        return first or 0.0, time.perf_counter() - t0

    return rates(args, one)


def peak_mb(pid: int) -> float:
    """The process's peak resident memory (VmHWM), MB."""
    text = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmHWM:\s+(\d+)", text).group(1)) / 1024


def start_ftm_serve():
    proc = subprocess.Popen([sys.executable, "-m", "ftmanager", "serve", "--port", "0", "--device", "cpu"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            env={**os.environ, "FTM_SERVE_API_KEY": "sk-bench"})
    return proc, re.search(r"(http://\S+/v1)", proc.stdout.readline()).group(1)


def fine_tuned(client, retrain: bool) -> str:
    """The ft: model of an earlier bench run, or a new one trained now."""
    made = [m.id for m in client.models.list() if m.id.startswith(f"ft:{BASE}:") and "ckpt" not in m.id]
    if made and not retrain:
        return made[-1]
    with open(ROOT / "examples" / "capitals.jsonl", "rb") as data:
        upload = client.files.create(file=data, purpose="fine-tune")
    job = client.fine_tuning.jobs.create(model=BASE, training_file=upload.id, suffix="bench", method={
        "type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 1, "batch_size": 4}}})
    while job.status not in ("succeeded", "failed", "cancelled"):
        time.sleep(2)
        job = client.fine_tuning.jobs.retrieve(job.id)
    if job.status != "succeeded":
        sys.exit(f"fine-tuning {job.status}: {job.error}")
    return job.fine_tuned_model


def start_transformers_serve(deps: str, merged: str, memory: float):
    """`transformers serve --continuous-batching` on the merged model (it has no adapters), from this
    venv with the folder `deps` (pip install --target DEPS fastapi) on its path."""
    port = 8765
    cmd = [str(Path(sys.executable).parent / "transformers"), "serve", "--continuous-batching", "--device", "cpu",
           "--port", str(port), "--cb-max-memory-percent", str(memory), merged]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "PYTHONPATH": deps})
    url = f"http://localhost:{port}/v1"
    _wait_http(url + "/models", proc)
    return proc, url


def _wait_http(url: str, proc, seconds: float = 300) -> None:
    import httpx

    deadline = time.time() + seconds
    while time.time() < deadline and proc.poll() is None:
        try:
            httpx.get(url, timeout=2)
            return
        except httpx.HTTPError:
            time.sleep(1)
    sys.exit(f"{url} did not answer")


# --- 3.: the pool in this process -----------------------------------------------------------


def pool_part(run: dict, args) -> dict:
    from ftm_backends.local.modeling.loading import target
    from ftm_backends.local.engine.pool import Ask, Piece, shared

    where = target(run["result_path"], run["base_model"])
    pool, msgs = shared(), chats(args.requests)  # the pool LocalBackend.generate (ftm eval) uses too
    pool.device, pool.max_batch = "cpu", args.clients
    adapters = derived_adapters(where.adapter, args.clients)

    def one(job) -> tuple[float, float]:
        i, adapter = job if isinstance(job, tuple) else (job, where.adapter)
        t0, first = time.perf_counter(), None
        for item in pool.stream(Ask(type(where)(where.base, adapter), msgs[i], max_tokens=args.max_tokens)):
            if isinstance(item, Piece) and item.text and first is None:
                first = time.perf_counter() - t0
        return first or 0.0, time.perf_counter() - t0

    passes = []
    for _ in range(args.passes):
        same = rates(args, one)
        mixed = rates(args, one, [(i, adapters[i % len(adapters)]) for i in range(args.requests)], alone=False)
        passes.append({**same, "mixed_rps": mixed["conc_rps"], "mixed_ttft": mixed["conc_ttft"],
                       **eval_generation(run, args)})
    pool.close()
    return {"passes": passes, "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def derived_adapters(adapter: str, n: int) -> list[str]:
    """n distinct adapters: the fine-tuned one with its B matrices scaled by 0.6 ... 1.4."""
    from safetensors.torch import load_file, save_file

    out = []
    for k in range(n):
        path = HOME / "bench-adapters" / f"a{k}"
        if not (path / "adapter_model.safetensors").exists():
            path.mkdir(parents=True, exist_ok=True)
            weights = load_file(Path(adapter) / "adapter_model.safetensors")
            scale = 0.6 + 0.8 * k / max(n - 1, 1)
            save_file({key: w * scale if "lora_B" in key else w for key, w in weights.items()},
                      path / "adapter_model.safetensors")
            (path / "adapter_config.json").write_text((Path(adapter) / "adapter_config.json").read_text())
        out.append(str(path))
    return out


def eval_generation(run: dict, args) -> dict:
    """What `ftm eval` does (LocalBackend.generate of every prompt at once) against one call per prompt."""
    from ftm_backends.local import LocalBackend

    rows = [json.loads(line) for line in (ROOT / "examples" / "capitals_heldout.jsonl").open()]
    prompts = ([r["messages"][:-1] for r in rows] * (args.requests // len(rows) + 1))[:args.requests]
    backend = LocalBackend()

    def gen(batch):
        return backend.generate(run["result_model"], run["result_path"], run["base_model"], batch, args.max_tokens)

    gen(prompts[:1])
    t0 = time.perf_counter()
    together = gen(prompts)
    batched = time.perf_counter() - t0
    t0 = time.perf_counter()
    alone = [gen([p])[0] for p in prompts]
    single = time.perf_counter() - t0
    return {"eval_batched": len(prompts) / batched, "eval_single": len(prompts) / single,
            "eval_same": sum(a == b for a, b in zip(together, alone)), "eval_n": len(prompts)}


# --- 4.: plain transformers in this process --------------------------------------------------


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


def plain_part(run: dict, args) -> dict:
    """The same model in a plain transformers loop: `ftm export --merge`'s model, loaded as a user would
    (transformers alone: no peft, and so no bitsandbytes and its second OpenMP runtime)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    merged = run["merged"]
    tok, model = AutoTokenizer.from_pretrained(merged), AutoModelForCausalLM.from_pretrained(merged).eval()
    tok.padding_side = "left"
    texts = [tok.apply_chat_template(c, tokenize=False, add_generation_prompt=True) for c in chats(args.requests)]

    def gen(batch: list[str], streamer=None):
        enc = tok(batch, return_tensors="pt", padding=True, add_special_tokens=False)
        with torch.no_grad():
            model.generate(**enc, max_new_tokens=args.max_tokens, do_sample=False,
                           pad_token_id=tok.pad_token_id, streamer=streamer)

    def one(i: int) -> tuple[float, float]:
        s, t0 = FirstToken(), time.perf_counter()
        gen([texts[i]], s)
        return s.at - t0, time.perf_counter() - t0

    passes = []
    for _ in range(args.passes):
        one(0)
        seq, firsts = clients(1, list(range(args.requests)), one)
        t0 = time.perf_counter()
        gen(texts)
        passes.append({"seq_rps": args.requests / seq, "ttft": statistics.median(f for f, _ in firsts),
                       "batch_rps": args.requests / (time.perf_counter() - t0)})
    return {"passes": passes, "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def part(name: str, run: dict, args) -> dict:
    """Run one pass of a part in a process of its own (its memory is its own), its result as JSON."""
    cmd = [sys.executable, __file__, *sys.argv[1:], "--part", name, "--run", json.dumps(run), "--passes", "1"]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=os.environ).stdout
    return json.loads(out.strip().splitlines()[-1])


# --- the report ----------------------------------------------------------------------------


def cell(passes: list[dict], key: str, scale: float = 1.0, fmt: str = "{:.2f}") -> str:
    """The median of the passes, and their range when they differ ("" where this row has no such measure)."""
    if key not in passes[0]:
        return ""
    values = sorted(p[key] * scale for p in passes)
    mid, lo, hi = (fmt.format(v) for v in (statistics.median(values), values[0], values[-1]))
    return mid if lo == hi else f"{mid} [{lo}-{hi}]"


def ratio(passes: list[dict], key: str, ref: list[dict] | None, ref_key: str) -> str:
    """Median against median."""
    if not ref or key not in passes[0]:
        return ""
    return f"{statistics.median(p[key] for p in passes) / statistics.median(p[ref_key] for p in ref):.2f}x"


def report(model: str, results: dict, args) -> None:
    plain, pool = results["plain"]["passes"], results["pool"]["passes"]
    tserve = results.get("tserve", {}).get("passes")
    rows = [("plain transformers generate, one at a time", plain, results["plain"]["peak_mb"]),
            ("one padded generate batch of all chats", [{"conc_rps": q["batch_rps"]} for q in plain], None),
            ("ftm model pool, one adapter", pool, results["pool"]["peak_mb"]),
            ("ftm model pool, an adapter per request",
             [{"conc_rps": p["mixed_rps"], "conc_ttft": p["mixed_ttft"]} for p in pool], None),
            ("ftm serve (openai client, streamed)", results["serve"]["passes"], results["serve"]["peak_mb"])]
    if tserve:
        rows.append(("transformers serve --continuous-batching", tserve, results["tserve"]["peak_mb"]))
    print(f"\n{model}: {args.requests} chats, <= {args.max_tokens} new tokens, greedy, CPU ({os.cpu_count()} "
          f"cores, load {os.getloadavg()[0]:.1f}); median [range] of {args.passes} passes; requests/s, ms")
    head = ["", "1 client", "x plain", "1st text", f"{args.clients} clients", "x batch", "x tserve", "1st text", "MB"]
    batch = [{"conc_rps": q["batch_rps"]} for q in plain]
    table = [head] + [[label, cell(p, "seq_rps"), ratio(p, "seq_rps", plain, "seq_rps"), cell(p, "ttft", 1000, "{:.0f}"),
                       cell(p, "conc_rps"), ratio(p, "conc_rps", batch, "conc_rps"), ratio(p, "conc_rps", tserve, "conc_rps"),
                       cell(p, "conc_ttft", 1000, "{:.0f}"), f"{mem:.0f}" if mem else ""] for label, p, mem in rows]
    widths = [max(len(r[i]) for r in table) for i in range(len(head))]
    for r in table:
        print(r[0].ljust(widths[0]) + "".join(c.rjust(w + 2) for c, w in zip(r[1:], widths[1:])))
    print(f"\nftm eval's generation (LocalBackend.generate, {pool[0]['eval_n']} held-out prompts): "
          f"all at once {cell(pool, 'eval_batched')} prompts/s, one call per prompt {cell(pool, 'eval_single')} "
          f"prompts/s ({ratio(pool, 'eval_batched', pool, 'eval_single')}), identical answers "
          f"{min(p['eval_same'] for p in pool)}/{pool[0]['eval_n']}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=16)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--passes", type=int, default=2)
    ap.add_argument("--retrain", action="store_true")
    ap.add_argument("--transformers-serve", metavar="DEPS",
                    help="also `transformers serve --continuous-batching`, with fastapi from this folder "
                         "(pip install --target DEPS fastapi)")
    ap.add_argument("--cb-memory", type=float, default=0.1,
                    help="its --cb-max-memory-percent (its own default, 0.8 of free memory, took 14 GB here)")
    ap.add_argument("--part", help=argparse.SUPPRESS)
    ap.add_argument("--run", help=argparse.SUPPRESS)
    args = ap.parse_args()
    HOME.mkdir(parents=True, exist_ok=True)
    os.environ["FTM_HOME"] = str(HOME)
    if args.part:
        print(json.dumps({"pool": pool_part, "plain": plain_part}[args.part](json.loads(args.run), args)))
        return
    (HOME / "served_models.toml").write_text(
        f'[models."{BASE}"]\nlocal = "{SMOLLM2}"\noptions = {{quantize = false, device = "cpu", max_length = 256}}\n')
    import openai

    from ftmanager import jobs

    proc, url = start_ftm_serve()
    servers = [proc]
    try:  # the passes interleaved, so that a change in the machine's load falls on every contender
        model = fine_tuned(openai.OpenAI(base_url=url, api_key="sk-bench", max_retries=0), args.retrain)
        ref = "run-" + model.rsplit(":", 1)[1]
        run = {k: v for k, v in jobs.show(ref).items() if k in ("result_model", "result_path", "base_model")}
        run["merged"] = str(HOME / f"merged-{ref}")  # as `ftm export --merge` writes it
        if not Path(run["merged"]).exists():
            jobs.export(ref, run["merged"])
        sides = {"serve": (url, model)}
        if args.transformers_serve:
            tproc, turl = start_transformers_serve(args.transformers_serve, run["merged"], args.cb_memory)
            servers.append(tproc)
            sides["tserve"] = (turl, run["merged"])
        results: dict = {name: {"passes": []} for name in [*sides, "pool", "plain"]}
        for _ in range(args.passes):
            for name, (where, served_model) in sides.items():
                results[name]["passes"].append(served(where, served_model, args))
            for name in ("pool", "plain"):
                one = part(name, run, args)
                results[name]["passes"] += one["passes"]
                results[name]["peak_mb"] = max(results[name].get("peak_mb", 0), one["peak_mb"])
        for name, server in zip(sides, servers):
            results[name]["peak_mb"] = peak_mb(server.pid)
    finally:
        for server in servers:
            server.terminate()
            server.wait(timeout=60)
    (HOME.parent / "serve-results.json").write_text(json.dumps(results, indent=1))
    report(model, results, args)


if __name__ == "__main__":
    main()
