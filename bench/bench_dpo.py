"""One epoch of DPO on SmolLM2-135M: ftm's local DPO step beside TRL's DPOTrainer, same pairs.

    python bench/bench_dpo.py                  # 32 pairs, CPU
    python bench/bench_dpo.py --n 64 --device cuda

Both train LoRA (r=16, alpha=32, dropout 0.05, all linear layers) on a float32 base with the
adapter switched off as the reference, the sigmoid loss at beta 0.1, 8 pairs per optimizer
step, AdamW at 2e-4, one epoch. TRL runs with its documented defaults except where they would
make the two differ: bf16 and gradient checkpointing off (ftm uses neither here), no logging
or saving. Each contender runs in its own process, so its peak memory is its own (peak RSS on
the CPU; peak allocated GPU memory on CUDA). Prints pairs per second, peak memory and the ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

LORA = dict(r=16, lora_alpha=32, lora_dropout=0.05, target_modules="all-linear")
LORA_OPTS = {"lora_r": 16, "lora_alpha": 32, "lora_dropout": 0.05, "target_modules": "all-linear"}
BATCH, LR, BETA, MAX_LENGTH = 8, 2e-4, 0.1, 1024


def pairs(n: int) -> list[dict]:
    """n preference pairs from the bundled capitals: the right capital over a wrong one."""
    rows = [json.loads(line) for line in (ROOT / "examples" / "capitals.jsonl").read_text().splitlines() if line]
    answers = [r["messages"][-1]["content"] for r in rows]
    out = []
    for i in range(n):
        row = rows[i % len(rows)]
        out.append({"input": {"messages": row["messages"][:-1]},
                    "preferred_output": [row["messages"][-1]],
                    "non_preferred_output": [{"role": "assistant", "content": answers[(i + 1) % len(answers)]}]})
    return out


def smollm2() -> str:
    from ftm_backends.local.modeling import loading as models

    return str(models.ensure_smollm2())


def run_ftm(rows: list[dict], device: str) -> dict:
    import torch

    from ftm_backends.local.modeling import loading as models
    from ftm_backends.local.trainer import batching, dpo, preference, rundir
    from ftm_backends.local.trainer.train import Run, lr_factor

    path, tmp = smollm2(), Path(tempfile.mkdtemp())
    opts = {"max_length": MAX_LENGTH, "device": device, "training_type": "lora", **LORA_OPTS}
    (tmp / rundir.SPEC).write_text(json.dumps({"run_id": "bench", "options": opts, "seed": 0}))
    run = Run(tmp, device=device)
    tok = models.load_tokenizer(path)
    model = models.trainable(path, device, run.opts, 0)
    encoded, _ = preference.encode_all_pairs(tok, rows, MAX_LENGTH, "chat")
    loss_fn = preference.PairLoss(model, dpo.Settings(beta=BETA)).train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=LR)
    plan = batching.plan_epoch([len(p.chosen.input_ids) for p in encoded], BATCH, 0, 0, grouped=True)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, len(plan)))
    collate = lambda chunk: dpo.collate(chunk, tok.pad_token_id, device)  # noqa: E731
    t0, figures = time.time(), {}
    for step in plan:
        figures = preference.train_step(run, loss_fn, opt, sched, collate, [encoded[i] for i in step])
    return {"seconds": time.time() - t0, "pairs": len(encoded), "loss": figures["train_loss"]}


def run_trl(rows: list[dict], device: str) -> dict:
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM
    from trl import DPOConfig, DPOTrainer

    from ftm_backends.local.modeling import loading as models

    path = smollm2()
    tok = models.load_tokenizer(path)
    config = DPOConfig(output_dir=tempfile.mkdtemp(), per_device_train_batch_size=BATCH, num_train_epochs=1,
                       learning_rate=LR, beta=BETA, loss_type=["sigmoid"], max_length=MAX_LENGTH,
                       bf16=False, fp16=False, gradient_checkpointing=False, use_cpu=device == "cpu",
                       report_to="none", save_strategy="no", logging_steps=1, dataloader_num_workers=0)
    data = Dataset.from_list([{"prompt": r["input"]["messages"], "chosen": r["preferred_output"],
                               "rejected": r["non_preferred_output"]} for r in rows])
    model = AutoModelForCausalLM.from_pretrained(path, dtype="float32")
    trainer = DPOTrainer(model=model, args=config, train_dataset=data, processing_class=tok,
                         peft_config=LoraConfig(task_type="CAUSAL_LM", **LORA))
    t0 = time.time()
    result = trainer.train()
    return {"seconds": time.time() - t0, "pairs": len(rows), "loss": result.training_loss}


CONTENDERS = {"ftm": run_ftm, "trl": run_trl}


def one(name: str, n: int, device: str) -> dict:
    """One contender, in this process, measured."""
    import torch

    result = CONTENDERS[name](pairs(n), device)
    result["pairs_per_s"] = result["pairs"] / result["seconds"]
    if device.startswith("cuda"):
        result["peak_memory_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
    else:
        result["peak_memory_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=32, help="preference pairs (one epoch over them)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--one", choices=CONTENDERS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one(args.one, args.n, args.device)))
        return
    results = {}
    for name in CONTENDERS:
        proc = subprocess.run([sys.executable, __file__, "--one", name, "--n", str(args.n), "--device", args.device],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            sys.exit(f"{name} failed:\n{proc.stderr[-3000:]}")
        results[name] = json.loads(proc.stdout.strip().splitlines()[-1])
        print(f"{name}: {json.dumps(results[name])}", flush=True)
    ftm, trl = results["ftm"], results["trl"]
    print(f"\n{args.n} pairs, SmolLM2-135M LoRA, {args.device}")
    print(f"{'':6}{'pairs/s':>10}{'peak MB':>10}{'final loss':>12}")
    for name, r in results.items():
        print(f"{name:6}{r['pairs_per_s']:>10.2f}{r['peak_memory_mb']:>10.0f}{r['loss']:>12.4f}")
    print(f"ftm/trl: {ftm['pairs_per_s'] / trl['pairs_per_s']:.2f}x the pairs per second, "
          f"{ftm['peak_memory_mb'] / trl['peak_memory_mb']:.2f}x the peak memory")


if __name__ == "__main__":
    main()
