"""One epoch of SmolLM2-135M fine-tuning: ftm's local trainer vs what a user would pick instead.

    python bench/bench_local.py                 # both datasets, every contender
    python bench/bench_local.py --data spread --n 24 --only ftm,trl-packed,ftm-full,trainer

Same base model, LoRA settings (r=16, alpha=32, dropout 0.05, all linear layers), effective
batch size (8 examples per optimizer step), machine and epoch for everyone; each contender
runs in its own process so peak RSS is its own. Contenders:
- ftm: packed padding-free rows with position ids, loss head only on trained tokens, its lean
  LoRA forward (train.fuse_lora).
- ftm-peft: the same with peft's own LoRA forward (what ftm did before the lean one).
- naive: every example padded to max_length, micro-batches of 4 (x2 accumulation), plain
  AdamW, the model's own full-vocabulary loss.
- trl: TRL's SFTTrainer with its defaults (batch 8, pad to the longest in the batch, bf16
  autocast, gradient checkpointing). TRL is installed for the benchmark only: in
  bench/out/venv-trl (see --help for the command).
- trl-cpu: the same with bf16 and gradient checkpointing off (both slow a CPU down).
- trl-packed: TRL's best setting, `packing=True` (best-fit packing, padding-free rows with
  position ids, like ftm's), with trl-cpu's flags. Each of its rows holds max_length tokens of
  packed examples, so its 8 rows per step hold far more than 8 examples.
- trl-packed-matched: the same with as many packed rows per step as hold 8 examples' tokens
  (the same work per optimizer step as everyone else's).
Full fine-tuning (every weight, float32, AdamW at 5e-5, gradient clipping at 1.0):
- ftm-full: ftm's trainer with training_type=full (packed rows, loss head only on trained tokens).
- trainer: Hugging Face `Trainer` as the classic walk-throughs set it up: the examples
  tokenized with the prompt masked by -100, `DataCollatorForSeq2Seq` padding each batch to its
  longest example, batch 8, its default AdamW and linear schedule, on the CPU.
Datasets: examples/capitals.jsonl, and a generated one whose lengths spread like Alpaca's.
Base weights are float32 for all (--quantize gives ftm and naive an NF4 base; TRL's defaults
have none). "Loss-bearing tokens" are the assistant tokens: the same count for everyone.

Beside each contender's speed: the FLOP/s it achieved on the epoch's useful work (bench/flops.py:
frozen base forward and backward, the adapters' weight gradients, the loss head over trained
tokens only; the same FLOPs for every contender of a table) and that as a fraction of this
machine's float32 matmul peak at the model's layer shapes, timed in the same run before and
after the contenders (the higher is the peak): the model FLOP utilization (MFU). Last, ftm's
epoch once more under torch.profiler: the ops that took the most CPU time.
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
from contextlib import contextmanager
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see backends/local/__init__.py
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
import flops  # noqa: E402  (bench/flops.py, beside this file)

TRL_VENV = ROOT / "bench" / "out" / "venv-trl"  # used when TRL is not installed beside ftm
# A .pth line that runs site.addsitedir on ftm's site-packages: unlike a bare path, it also
# reads the .pth files there, among them the editable install's, which makes ftm_backends importable.
TRL_HELP = (f"TRL is not installed for the benchmark: `pip install trl` beside ftm, or install it in its own venv that also sees "
            f"ftm's (a .pth file), so ftm's own environment stays free of it:\n"
            f"  python -m venv {TRL_VENV}\n"
            f"  {sys.executable} -c 'import sysconfig; print(\"import site; site.addsitedir(%r)\" "
            f"% sysconfig.get_paths()[\"purelib\"])' > {TRL_VENV}/lib/python3.11/site-packages/ftm-venv.pth\n"
            f"  {TRL_VENV}/bin/pip install trl==1.16.0 torch==2.13.0")
LORA = dict(r=16, lora_alpha=32, lora_dropout=0.05, target_modules="all-linear")
LORA_OPTS = {"lora_r": 16, "lora_alpha": 32, "lora_dropout": 0.05, "target_modules": "all-linear"}
BATCH, LR, FULL_LR = 8, 2e-4, 5e-5
GROUPS = {"ftm": ("ftm", "ftm-peft", "naive", "trl", "trl-cpu", "trl-packed", "trl-packed-matched"),
          "ftm-full": ("ftm-full", "trainer")}  # each table: ours first, then what it is compared with
WORDS = ("the of and to in is was for on that with as by at from it an be this are or his which "
         "model data river city music history energy garden recipe network planet story market").split()


def spread_dataset(n: int, seed: int = 0) -> list[dict]:
    """Chat examples whose token lengths spread like Alpaca's: tens to hundreds."""
    rng = random.Random(seed)
    text = lambda k: " ".join(rng.choice(WORDS) for _ in range(k))  # noqa: E731
    rows = []
    for _ in range(n):
        prompt = max(4, int(rng.lognormvariate(2.8, 0.6)))  # ~16 words, up to ~100
        answer = max(2, min(300, int(rng.lognormvariate(3.6, 0.9))))  # ~35 words, tail to 300
        rows.append({"messages": [{"role": "user", "content": text(prompt)},
                                  {"role": "assistant", "content": text(answer)}]})
    return rows


def load_rows(name: str, n: int) -> list[dict]:
    if name == "capitals":
        return [json.loads(x) for x in (ROOT / "examples/capitals.jsonl").read_text().splitlines() if x.strip()]
    return spread_dataset(n)


def smollm2() -> str:
    from ftm_backends.local.modeling import loading as models

    return str(models.ensure_smollm2())


# --- contenders: each returns {seconds, examples, trained_tokens, padding_fraction, loss} ----

def run_ftm(rows, max_length, quantize, method: str | None = None, fused: bool = True) -> dict:
    import torch

    from ftm_backends.local.modeling import encoding, loading as models
    from ftm_backends.local.trainer import batching, rundir, train
    from ftm_backends.local.trainer.train import Run, TokenLoss, lr_factor, train_step

    if not fused:  # ftm-peft: peft's own LoRA forward, to show what the lean one gains
        train.fuse_lora = lambda model: 0

    path = smollm2()
    tmp = Path(tempfile.mkdtemp())
    how = {"training_type": method} if method else {"quantize": quantize, **LORA_OPTS}
    opts = {"max_length": max_length, "device": "cpu", **how}
    (tmp / rundir.SPEC).write_text(json.dumps({"run_id": "bench", "options": opts, "seed": 0}))
    run = Run(tmp)
    tok = models.load_tokenizer(path)
    model = models.trainable(path, "cpu", run.opts, 0)
    encoded, _ = encoding.encode_all(tok, rows, max_length)
    loss_fn = TokenLoss(model).train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=FULL_LR if method else LR)
    plan = batching.plan_epoch([len(e.input_ids) for e in encoded], BATCH, 0, 0, grouped=False)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, len(plan)))
    collate = batching.collator(True, tok.pad_token_id, "cpu")
    t0, losses = time.time(), []
    with profiled() as table:
        for step in plan:
            losses.append(train_step(run, loss_fn, opt, sched, collate, [encoded[i] for i in step])["train_loss"])
    return {"seconds": time.time() - t0, "examples": len(encoded), "loss": losses[-1],
            "trained_tokens": sum(e.n_trained for e in encoded), "padding_fraction": 0.0, **table}


PROFILE = {"on": False}  # --profile: ftm's epoch runs under torch.profiler


@contextmanager
def profiled():
    """Run the block under torch.profiler when asked; the dict it yields then gets the table
    of the ops with the most self CPU time."""
    out: dict = {}
    if not PROFILE["on"]:
        yield out
        return
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        yield out
    out["profile"] = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15)


def run_naive(rows, max_length, quantize) -> dict:
    import torch

    from ftm_backends.local.modeling import encoding, loading as models
    from ftm_backends.local.trainer import batching
    from ftm_backends.local.trainer.options import resolve_options

    path = smollm2()
    tok = models.load_tokenizer(path)
    opts = resolve_options({"quantize": quantize, **LORA_OPTS})
    model = models.with_lora(models.load_base(path, "cpu", quantize), opts, 0).train()
    encoded, _ = encoding.encode_all(tok, rows, max_length)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=LR)
    order = list(range(len(encoded)))
    random.Random(0).shuffle(order)
    t0, micro, loss, batches = time.time(), 4, None, []
    for k in range(0, len(order), micro):
        batch = batching.collate_padded([encoded[i] for i in order[k:k + micro]], tok.pad_token_id, max_length)
        labels = torch.tensor([e.labels + [-100] * (max_length - len(e.labels)) for e in
                               (encoded[i] for i in order[k:k + micro])])
        out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=labels)
        (out.loss / (BATCH // micro)).backward()
        batches.append(batch)
        if (k // micro) % (BATCH // micro) == BATCH // micro - 1 or k + micro >= len(order):
            opt.step()
            opt.zero_grad()
        loss = out.loss.item()
    return {"seconds": time.time() - t0, "examples": len(encoded), "loss": loss,
            "trained_tokens": sum(e.n_trained for e in encoded),
            "padding_fraction": batching.padding_fraction(batches)}


def run_ftm_peft(rows, max_length, quantize) -> dict:
    return run_ftm(rows, max_length, quantize, fused=False)


def run_ftm_full(rows, max_length, quantize) -> dict:
    return run_ftm(rows, max_length, quantize, method="full")


def run_trainer(rows, max_length, quantize) -> dict:
    """HF Trainer, full fine-tuning, as the walk-throughs write it (prompt masked by -100)."""
    from transformers import AutoModelForCausalLM, DataCollatorForSeq2Seq, Trainer, TrainingArguments

    from ftm_backends.local.modeling import encoding, loading as models

    path = smollm2()
    tok = models.load_tokenizer(path)
    encoded, _ = encoding.encode_all(tok, rows, max_length)
    features = [{"input_ids": e.input_ids, "attention_mask": [1] * len(e.input_ids), "labels": e.labels}
                for e in encoded]
    args = TrainingArguments(output_dir=tempfile.mkdtemp(), per_device_train_batch_size=BATCH, num_train_epochs=1,
                             learning_rate=FULL_LR, weight_decay=0.0, max_grad_norm=1.0, use_cpu=True,
                             report_to="none", save_strategy="no", logging_steps=1, dataloader_num_workers=0)
    collate = DataCollatorForSeq2Seq(tok, padding=True, label_pad_token_id=-100)
    counts = [0, 0]

    def counting(batch):
        out = collate(batch)
        counts[0] += out["input_ids"].numel()
        counts[1] += int(out["attention_mask"].sum())
        return out

    model = AutoModelForCausalLM.from_pretrained(path, dtype="float32")
    trainer = Trainer(model=model, args=args, train_dataset=features, data_collator=counting)
    t0 = time.time()
    result = trainer.train()
    return {"seconds": time.time() - t0, "examples": len(encoded), "loss": result.training_loss,
            "trained_tokens": sum(e.n_trained for e in encoded), "padding_fraction": 1 - counts[1] / counts[0]}


def run_trl_cpu(rows, max_length, quantize) -> dict:
    """TRL with the two defaults that hurt on a CPU turned off: bf16 autocast, checkpointing."""
    return run_trl(rows, max_length, quantize, bf16=False, gradient_checkpointing=False)


def run_trl_packed(rows, max_length, quantize) -> dict:
    """TRL's best setting: packed, padding-free rows, with trl-cpu's flags."""
    return run_trl(rows, max_length, quantize, packing=True, bf16=False, gradient_checkpointing=False)


def run_trl_packed_matched(rows, max_length, quantize) -> dict:
    """Packed as trl-packed, with as many rows per step as hold 8 examples' tokens."""
    from ftm_backends.local.modeling import encoding, loading as models

    lengths = [len(e.input_ids) for e in encoding.encode_all(models.load_tokenizer(smollm2()), rows, max_length)[0]]
    rows_per_step = max(1, round(BATCH * sum(lengths) / len(lengths) / max_length))
    return run_trl(rows, max_length, quantize, packing=True, bf16=False, gradient_checkpointing=False,
                   per_device_train_batch_size=rows_per_step)


def run_trl(rows, max_length, quantize, **overrides) -> dict:
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM
    from trl import SFTConfig, SFTTrainer

    from ftm_backends.local.modeling import encoding, loading as models

    path = smollm2()
    tok = models.load_tokenizer(path)
    trained = sum(e.n_trained for e in encoding.encode_all(tok, rows, max_length)[0])
    settings = dict(output_dir=tempfile.mkdtemp(), per_device_train_batch_size=BATCH, num_train_epochs=1,
                    max_length=max_length, report_to="none", save_strategy="no", use_cpu=True,
                    learning_rate=LR, logging_steps=1, dataloader_num_workers=0)
    config = SFTConfig(**{**settings, **overrides})
    model = AutoModelForCausalLM.from_pretrained(path, dtype="float32")
    trainer = SFTTrainer(model=model, args=config, train_dataset=Dataset.from_list(rows),
                         processing_class=tok, peft_config=LoraConfig(task_type="CAUSAL_LM", **LORA))
    counts, collate = [0, 0], trainer.data_collator

    def counting(features):
        batch = collate(features)
        mask = batch.get("attention_mask")
        counts[0] += batch["input_ids"].numel()
        counts[1] += int(mask.sum()) if mask is not None else batch["input_ids"].numel()
        return batch

    trainer.data_collator = counting
    t0 = time.time()
    result = trainer.train()
    return {"seconds": time.time() - t0, "examples": len(rows), "loss": result.training_loss,
            "trained_tokens": trained, "padding_fraction": 1 - counts[1] / counts[0] if counts[0] else None}


CONTENDERS = {"ftm": run_ftm, "ftm-peft": run_ftm_peft, "naive": run_naive, "trl": run_trl, "trl-cpu": run_trl_cpu,
              "trl-packed": run_trl_packed, "trl-packed-matched": run_trl_packed_matched,
              "ftm-full": run_ftm_full, "trainer": run_trainer}


def one(name: str, data: str, n: int, max_length: int, quantize: bool) -> dict:
    """Run one contender in this process and measure it."""
    rows = load_rows(data, n)
    result = CONTENDERS[name](rows, max_length, quantize)
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result["examples_per_s"] = result["examples"] / result["seconds"]
    result["trained_tokens_per_s"] = result["trained_tokens"] / result["seconds"]
    result["flops"] = epoch_flops(rows, max_length, "full" if name in GROUPS["ftm-full"] else "lora")
    result["flops_per_s"] = result["flops"] / result["seconds"]
    return result


def model_config():
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(smollm2())


def epoch_flops(rows, max_length: int, method: str) -> float:
    """The useful FLOPs of one epoch over rows (as ftm encodes them: the same for everyone)."""
    from ftm_backends.local.modeling import encoding, loading as models

    encoded, _ = encoding.encode_all(models.load_tokenizer(smollm2()), rows, max_length)
    return flops.epoch_flops(model_config(), [len(e.input_ids) for e in encoded],
                             sum(e.n_trained for e in encoded), method, LORA["r"])


def peak() -> float:
    """This machine's float32 matmul FLOP/s at SmolLM2's layer shapes, packed-row wide."""
    import torch

    return flops.matmul_peak(model_config(), torch.float32, "cpu", tokens=1024)


def trl_python() -> str | None:
    """A Python that can import TRL: this one, else the benchmark's own venv."""
    if subprocess.run([sys.executable, "-c", "import trl"], capture_output=True).returncode == 0:
        return sys.executable
    return str(TRL_VENV / "bin" / "python") if (TRL_VENV / "bin" / "python").exists() else None


def spawn(name: str, args, profile: bool = False) -> dict | None:
    python = sys.executable
    if name.startswith("trl"):
        python = trl_python()
        if python is None:
            print(TRL_HELP, file=sys.stderr)
            return None
    cmd = [python, __file__, "--one", name, "--data", args.data_one, "--n", str(args.n),
           "--max-length", str(args.max_length)] + (["--quantize"] if args.quantize else []) + \
          (["--profile"] if profile else [])
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        print(f"{name} failed:\n{proc.stderr[-3000:]}", file=sys.stderr)
        return None
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    shown = {k: v for k, v in result.items() if k != "profile"}
    print(f"{args.data_one} {name}: {json.dumps(shown)}", file=sys.stderr, flush=True)  # partial results
    return result


def table(data: str, results: dict, top: float) -> None:
    for ours, names in GROUPS.items():
        group = {name: results[name] for name in names if results.get(name)}
        if group:
            table_of(f"{data}, {'full fine-tuning' if ours == 'ftm-full' else 'LoRA'}", ours, group, top)


def table_of(title: str, ours_name: str, results: dict, top: float) -> None:
    print(f"\n== {title}: one epoch, {BATCH} examples per step ==")
    print(f"{'contender':18} {'s/epoch':>9} {'ex/s':>7} {'tok/s':>7} {'GFLOP/s':>8} {'MFU':>6} {'peak MB':>8} "
          f"{'padding':>8} {'loss':>7}")
    for name, r in results.items():
        if r:
            print(f"{name:18} {r['seconds']:9.1f} {r['examples_per_s']:7.2f} {r['trained_tokens_per_s']:7.1f} "
                  f"{r['flops_per_s'] / 1e9:8.1f} {r['flops_per_s'] / top:6.1%} {r['peak_rss_mb']:8.0f} "
                  f"{r['padding_fraction']:8.1%} {r['loss']:7.3f}")
    if any(r and r["flops_per_s"] > top for r in results.values()):
        print("(an MFU over 100%: the peak was timed while the shared machine was busier than during that "
              "contender; compare the contenders' GFLOP/s with one another)")
    ours = results.get(ours_name)
    for name, r in results.items():
        if r and ours and name != ours_name:
            print(f"{ours_name} vs {name}: {ours['examples_per_s'] / r['examples_per_s']:.2f}x examples/s, "
                  f"{ours['peak_rss_mb'] / r['peak_rss_mb']:.2f}x peak RSS")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=TRL_HELP)
    parser.add_argument("--data", choices=["capitals", "spread", "both"], default="both")
    parser.add_argument("--n", type=int, default=48, help="examples in the generated spread dataset")
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--quantize", action="store_true")
    parser.add_argument("--only", default=",".join(CONTENDERS), help="comma-separated contenders")
    parser.add_argument("--no-profile", action="store_true", help="skip the profile of ftm's epoch")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--profile", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        PROFILE["on"] = args.profile
        print(json.dumps(one(args.one, args.data, args.n, args.max_length, args.quantize)))
        return
    smollm2()  # convert the GGUF once, outside every contender's timing
    before = peak()
    datasets = ["capitals", "spread"] if args.data == "both" else [args.data]
    results = {}
    for data in datasets:
        args.data_one = data
        results[data] = {name: spawn(name, args) for name in args.only.split(",")}
    top = max(before, peak())
    print(f"\nfloat32 matmul peak at SmolLM2-135M's layer shapes (1024 rows), timed here before and after: "
          f"{top / 1e9:.1f} GFLOP/s (before: {before / 1e9:.1f})")
    for data in datasets:
        table(data, results[data], top)
    if not args.no_profile:
        profile_epoch(args, datasets[-1])


def profile_epoch(args, data: str) -> None:
    """ftm's epoch again, under torch.profiler: where its time goes, op by op."""
    args.data_one = data
    ours = "ftm-full" if "ftm-full" in args.only.split(",") and "ftm" not in args.only.split(",") else "ftm"
    result = spawn(ours, args, profile=True)
    if result and result.get("profile"):
        print(f"\n== {ours} on {data}, one epoch under torch.profiler ({result['seconds']:.1f} s with the "
              f"profiler on): the ops with the most self CPU time ==")
        print(result["profile"])


if __name__ == "__main__":
    main()
