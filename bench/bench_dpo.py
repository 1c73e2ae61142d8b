"""One epoch of DPO on SmolLM2-135M: ftm's local DPO step beside TRL's DPOTrainer, same pairs.

    python bench/bench_dpo.py                  # 32 pairs, CPU
    python bench/bench_dpo.py --n 64 --device cuda

All train LoRA (r=16, alpha=32, dropout 0.05, all linear layers) on a float32 base with the
adapter switched off as the reference, the sigmoid loss at beta 0.1, 8 pairs per optimizer step,
one epoch over the same pairs. Four contenders, each in its own process, so its peak memory is
its own (peak RSS on the CPU; peak allocated GPU memory on CUDA):

- ftm: AdamW at 2e-4, float32 throughout (ftm's default).
- ftm-bf16: the same with the two levers TRL's defaults pull: `-p bf16=true` (forward passes under
  bf16 autocast) and `-p gradient_checkpointing=true`.
- trl (matched): DPOTrainer at ftm's settings: learning rate 2e-4, bf16 and gradient
  checkpointing off (ftm uses neither here), no saving.
- trl-defaults: DPOTrainer as DPOConfig() comes in trl 1.16.0, given only the output folder, one
  epoch (the default is 3: pairs per second is what we compare) and `use_cpu` on the CPU (its
  bf16 default refuses to start there without it). So: bf16 mixed precision on (the default is
  `not fp16`), gradient checkpointing on, precompute_ref_log_probs off (the reference pass runs
  every step), fused AdamW at 1e-6, 8 pairs per device, max_length 1024, logging every 10 steps,
  saving every 500; the model given by path, which DPOTrainer loads in float32.

Prints pairs per second, peak memory, final loss, and ftm's ratio to the TRL contender at the
same settings: ftm / trl (matched), and ftm-bf16 / trl-defaults.
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


def run_ftm(rows: list[dict], device: str, levers: dict | None = None) -> dict:
    import torch

    from ftm_backends.local.modeling import loading as models
    from ftm_backends.local.trainer import batching, dpo, preference, rundir
    from ftm_backends.local.trainer.train import Run, lr_factor

    path, tmp = smollm2(), Path(tempfile.mkdtemp())
    opts = {"max_length": MAX_LENGTH, "device": device, "training_type": "lora", **LORA_OPTS, **(levers or {})}
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


def trl_data(rows: list[dict]):
    from datasets import Dataset

    return Dataset.from_list([{"prompt": r["input"]["messages"], "chosen": r["preferred_output"],
                               "rejected": r["non_preferred_output"]} for r in rows])


def train_trl(model, config, rows: list[dict]) -> dict:
    """DPOTrainer with our LoRA on these pairs, timed over training alone."""
    from peft import LoraConfig
    from trl import DPOTrainer

    from ftm_backends.local.modeling import loading as models

    tok = models.load_tokenizer(smollm2())
    trainer = DPOTrainer(model=model, args=config, train_dataset=trl_data(rows), processing_class=tok,
                         peft_config=LoraConfig(task_type="CAUSAL_LM", **LORA))
    t0 = time.time()
    result = trainer.train()
    return {"seconds": time.time() - t0, "pairs": len(rows), "loss": result.training_loss}


def run_trl(rows: list[dict], device: str) -> dict:
    from transformers import AutoModelForCausalLM
    from trl import DPOConfig

    config = DPOConfig(output_dir=tempfile.mkdtemp(), per_device_train_batch_size=BATCH, num_train_epochs=1,
                       learning_rate=LR, beta=BETA, loss_type=["sigmoid"], max_length=MAX_LENGTH,
                       bf16=False, fp16=False, gradient_checkpointing=False, use_cpu=device == "cpu",
                       report_to="none", save_strategy="no", logging_steps=1, dataloader_num_workers=0)
    return train_trl(AutoModelForCausalLM.from_pretrained(smollm2(), dtype="float32"), config, rows)


def run_trl_defaults(rows: list[dict], device: str) -> dict:
    from trl import DPOConfig

    config = DPOConfig(output_dir=tempfile.mkdtemp(), num_train_epochs=1, use_cpu=device == "cpu")
    return train_trl(smollm2(), config, rows)  # by path: DPOTrainer's own loading (float32 unless told)


def run_ftm_bf16(rows: list[dict], device: str) -> dict:
    return run_ftm(rows, device, {"bf16": True, "gradient_checkpointing": True})


CONTENDERS = {"ftm": run_ftm, "trl": run_trl, "ftm-bf16": run_ftm_bf16, "trl-defaults": run_trl_defaults}
PAIRED = (("ftm", "trl"), ("ftm-bf16", "trl-defaults"))  # each ftm setting beside TRL's at the same levers


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
    print(f"\n{args.n} pairs, SmolLM2-135M LoRA, {args.device}")
    print(f"{'':14}{'pairs/s':>10}{'peak MB':>10}{'final loss':>12}")
    for name, r in results.items():
        print(f"{name:14}{r['pairs_per_s']:>10.2f}{r['peak_memory_mb']:>10.0f}{r['loss']:>12.4f}")
    for mine, theirs in PAIRED:
        ours, other = results[mine], results[theirs]
        print(f"{mine}/{theirs}: {ours['pairs_per_s'] / other['pairs_per_s']:.2f}x the pairs per second, "
              f"{ours['peak_memory_mb'] / other['peak_memory_mb']:.2f}x the peak memory")


if __name__ == "__main__":
    main()
