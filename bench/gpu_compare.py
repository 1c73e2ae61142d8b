"""gpu_check's comparisons: TRL's SFTTrainer at matched settings (in a process of its own:
`python bench/gpu_compare.py MODEL DATA [--smoke]` prints its figures as JSON), and serving with
ftm's pool beside transformers' generate. See gpu_check.py."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from gpu_check import Size


# --- 2. TRL's SFTTrainer, in a process of its own --------------------------------------------

def trl_part(model: Path, data: Path, size: Size) -> dict:
    """TRL at matched settings, or a note why not."""
    if subprocess.run([sys.executable, "-c", "import trl"], capture_output=True).returncode != 0:
        return {"skipped": "trl is not installed (pip install trl, or carry its wheel with --wheels)"}
    cmd = [sys.executable, __file__, str(model), str(data)] + (["--smoke"] if size.smoke else [])
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        return {"skipped": f"TRL failed: {proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else proc.returncode}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def trl_child(model: Path, data: Path, size: Size) -> dict:
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import SFTConfig, SFTTrainer

    rows = [json.loads(line) for line in data.read_text().splitlines()]
    tok = AutoTokenizer.from_pretrained(model)
    texts = [tok.apply_chat_template(r["messages"], tokenize=False) for r in rows]
    lengths = [len(tok(t, add_special_tokens=False)["input_ids"]) for t in texts]
    rows_per_step = max(1, round(size.batch * sum(lengths) / len(lengths) / size.max_length))
    times: list[float] = []

    class Clock(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if size.device == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter())

    config = SFTConfig(output_dir=tempfile.mkdtemp(), per_device_train_batch_size=rows_per_step, num_train_epochs=1,
                       max_length=size.max_length, packing=True, bf16=not size.smoke, gradient_checkpointing=False,
                       learning_rate=1e-3, report_to="none", save_strategy="no", logging_steps=1,
                       use_cpu=size.smoke, dataloader_num_workers=0)
    base = AutoModelForCausalLM.from_pretrained(model, dtype=torch.float32 if size.smoke else torch.bfloat16)
    trainer = SFTTrainer(model=base.to(size.device), args=config, train_dataset=Dataset.from_list(rows),
                         processing_class=tok, callbacks=[Clock()],
                         peft_config=LoraConfig(task_type="CAUSAL_LM", r=16, lora_alpha=32, lora_dropout=0.05,
                                                target_modules="all-linear"))
    if size.device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    loss = trainer.train().training_loss
    # every step after the first, at the epoch's mean tokens per step (packed rows are near full)
    per_step = sum(lengths) / max(1, len(times))
    seconds = times[-1] - times[0] if len(times) > 1 else float("nan")
    return {"tokens_per_s": per_step * (len(times) - 1) / seconds, "timed_seconds": seconds, "steps": len(times),
            "rows_per_step": rows_per_step, "loss": loss, "timed_tokens": per_step * (len(times) - 1),
            "peak_gpu_memory_gb": torch.cuda.max_memory_allocated() / 2**30 if size.device == "cuda" else None}


# --- 3. serving: the pool beside plain generate and a padded batch --------------------------

def serve_part(base: Path, chats: list, size: Size) -> dict:
    """Requests/s and new tokens/s of the pool (all prompts at once) and of transformers'
    generate (one at a time, and one left-padded batch), greedy, on the same model."""
    from ftm_backends.local.engine.pool import Ask, Pool
    from ftm_backends.local.modeling.loading import target

    out = {}
    pool = Pool(device=size.device, max_batch=len(chats))
    where = target(None, str(base))
    pool.answers([Ask(where, chats[0], max_tokens=2)])  # load and warm up outside the timing
    reset_peak(size)
    t0 = time.perf_counter()
    done = pool.answers([Ask(where, c, max_tokens=size.new_tokens) for c in chats])
    out["pool"] = rates(len(chats), sum(d.completion_tokens for d in done), time.perf_counter() - t0, size)
    pool.close()
    out.update(plain_generate(base, chats, size))
    return out


def plain_generate(base: Path, chats: list, size: Size) -> dict:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(base)
    tok.padding_side = "left"
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32 if size.smoke else torch.bfloat16)
    model = model.to(size.device).eval()
    texts = [tok.apply_chat_template(c, tokenize=False, add_generation_prompt=True) for c in chats]

    def gen(batch: list[str]) -> int:
        enc = tok(batch, return_tensors="pt", padding=True, add_special_tokens=False).to(size.device)
        with torch.no_grad():
            ids = model.generate(**enc, max_new_tokens=size.new_tokens, do_sample=False, pad_token_id=tok.pad_token_id)
        new = ids[:, enc["input_ids"].shape[1]:]
        return int(((new != tok.pad_token_id) & (new != tok.eos_token_id)).sum()) + int((new == tok.eos_token_id).any(1).sum())

    gen(texts[:1])
    out = {}
    reset_peak(size)
    t0 = time.perf_counter()
    made = sum(gen([t]) for t in texts)
    out["generate"] = rates(len(texts), made, time.perf_counter() - t0, size)
    reset_peak(size)
    t0 = time.perf_counter()
    out["padded_batch"] = rates(len(texts), gen(texts), time.perf_counter() - t0, size)
    return out


def reset_peak(size: Size) -> None:
    import torch

    if size.device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()


def rates(requests: int, tokens: int, seconds: float, size: Size) -> dict:
    import torch

    peak = torch.cuda.max_memory_allocated() / 2**30 if size.device == "cuda" else None
    return {"requests_per_s": requests / seconds, "new_tokens_per_s": tokens / seconds, "peak_gpu_memory_gb": peak}


if __name__ == "__main__":
    model, data = Path(sys.argv[1]), Path(sys.argv[2])
    print(json.dumps(trl_child(model, data, Size("--smoke" in sys.argv[3:]))))
