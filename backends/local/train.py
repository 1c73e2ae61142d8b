"""The training loop the worker runs, top to bottom: load, encode, train, checkpoint, report.

Only rank 0 writes the progress file and checkpoints; under DDP every rank trains on its
share of each optimizer step and the sums are all-reduced, so the loss reported is the
same as one process would see.
"""

from __future__ import annotations

import json
import math
import random
import shutil
import time
from contextlib import nullcontext
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from . import batching, chat, model as models, progress
from .options import resolve_hyperparameters, resolve_options
from ftmanager.errors import InvalidInput

WARMUP_FRACTION = 0.03
MAX_GRAD_NORM = 1.0


class Cancelled(Exception):
    pass


class TokenLoss(nn.Module):
    """Summed loss, correct count and count over trained tokens only.

    The output head runs only on positions that carry a label: on chat data most positions
    are prompt, and the head (vocab x hidden) is a large share of a small model's compute.
    """

    def __init__(self, peft_model):
        super().__init__()
        self.peft_model = peft_model  # registered, so DDP sees the LoRA parameters
        base = peft_model.get_base_model()
        self.decoder, self.head = base.get_decoder(), base.get_output_embeddings()

    def forward(self, input_ids, position_ids, attention_mask, targets):
        out = self.decoder(input_ids=input_ids, position_ids=position_ids,
                           attention_mask=attention_mask, use_cache=False)
        keep = targets != chat.IGNORE
        logits = self.head(out.last_hidden_state[keep]).float()
        gold = targets[keep]
        loss = F.cross_entropy(logits, gold, reduction="sum")
        return loss, (logits.argmax(-1) == gold).sum(), keep.sum()


class Run:
    """One run directory: its spec, options, hyperparameters and where this rank stands."""

    def __init__(self, run_dir: Path, rank: int = 0, world: int = 1):
        self.dir, self.rank, self.world = Path(run_dir), rank, world
        self.spec = json.loads((self.dir / progress.SPEC).read_text())
        self.opts = resolve_options(self.spec.get("options") or {})
        self.seed = int(self.spec.get("seed") or 0)
        self.main = rank == 0

    def report(self, kind: str, **data) -> None:
        if self.main:
            progress.append(self.dir, kind, **data)

    def event(self, message: str, level: str = "info") -> None:
        self.report("event", message=message, level=level)


def read_jsonl(path) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def encode_file(run: Run, tok, path) -> tuple[list[chat.Encoded], int]:
    """Encode a dataset file, reporting truncated and dropped examples."""
    examples = read_jsonl(path)
    kept, stats = chat.encode_all(tok, examples, run.opts["max_length"])
    name = Path(path).name
    if stats["truncated"]:
        run.event(f"{stats['truncated']} of {len(examples)} examples in {name} were truncated "
                  f"to max_length={run.opts['max_length']} tokens", level="warn")
    if stats["dropped"]:
        lines = ", ".join(map(str, stats["dropped_lines"][:10]))
        run.event(f"{stats['dropped']} examples in {name} were dropped: no trained token left "
                  f"after truncation (lines {lines})", level="warn")
    if not kept:
        raise InvalidInput(f"no example in {name} has an assistant token left to train",
                           "Raise -p max_length or check the assistant messages' weights.")
    return kept, len(examples)


def lr_factor(step: int, total: int) -> float:
    """Linear warmup over the first 3% of steps, then linear decay to zero."""
    warm = max(1, int(WARMUP_FRACTION * total))
    return min(1.0, (step + 1) / warm) * max(0.0, (total - step) / total)


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The newest complete checkpoint (renamed into place, with its trainer state)."""
    done = [p for p in (Path(run_dir) / "checkpoints").glob("step-*") if (p / "state.pt").exists()]
    return max(done, key=lambda p: int(p.name.split("-")[1]), default=None)


def save_checkpoint(run: Run, peft_model, opt, sched, step: int) -> Path:
    """Adapter + optimizer, scheduler and RNG state, written aside then renamed into place."""
    root = run.dir / "checkpoints"
    final, tmp = root / f"step-{step}", root / f".tmp-step-{step}"
    shutil.rmtree(tmp, ignore_errors=True)
    peft_model.save_pretrained(tmp / "adapter")
    state = {"step": step, "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
             "torch_rng": torch.get_rng_state(), "python_rng": random.getstate()}
    if torch.cuda.is_available():
        state["cuda_rng"] = torch.cuda.get_rng_state_all()
    torch.save(state, tmp / "state.pt")
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)
    for old in root.glob("step-*"):  # only the newest needs optimizer state to resume
        if old != final and (old / "state.pt").exists():
            (old / "state.pt").unlink()
    return final


def restore(ckpt: Path, opt, sched) -> int:
    state = torch.load(ckpt / "state.pt", weights_only=False)
    opt.load_state_dict(state["optimizer"])
    sched.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["torch_rng"])
    random.setstate(state["python_rng"])
    if "cuda_rng" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda_rng"])
    return state["step"]


def collate(run: Run, examples: list[chat.Encoded], pad_id: int) -> dict:
    if run.opts["packing"]:
        return batching.collate_packed(examples)
    return batching.collate_padded(examples, pad_id)


def to_device(batch: dict, device: str) -> dict:
    return {k: (v.to(device) if v is not None else None) for k, v in batch.items()}


def my_share(run: Run, step_examples: list[chat.Encoded]) -> list[chat.Encoded]:
    """This rank's examples of a step; a rank left without any trains one with no labels."""
    mine = step_examples[run.rank::run.world]
    if mine:
        return mine
    blank = step_examples[0]
    return [chat.Encoded(blank.input_ids, [chat.IGNORE] * len(blank.labels))]


def all_sum(run: Run, values: list[float]) -> list[float]:
    if run.world == 1:
        return values
    t = torch.tensor(values, dtype=torch.float64)
    torch.distributed.all_reduce(t)
    return t.tolist()


def train_step(run: Run, loss_mod, step_examples, opt, sched, device, pad_id) -> dict:
    """One optimizer step over step_examples, in micro-batches; returns its metrics."""
    n_tokens = sum(e.n_trained for e in step_examples)  # the whole step's, on every rank
    parts = max(1, min(run.opts["gradient_accumulation_steps"], len(step_examples) // run.world))
    micro = batching.split(my_share(run, step_examples), parts)
    sums = [0.0, 0.0]
    for k, mb in enumerate(micro):
        sync = nullcontext() if run.world == 1 or k == len(micro) - 1 else loss_mod.no_sync()
        with sync:
            loss, correct, _count = loss_mod(**to_device(collate(run, mb, pad_id), device))
            # DDP averages gradients over ranks: scale so the result is the step's token mean
            (loss * run.world / n_tokens).backward()
        sums[0] += loss.item()
        sums[1] += correct.item()
    params = [p for p in loss_mod.parameters() if p.requires_grad]
    torch.nn.utils.clip_grad_norm_(params, MAX_GRAD_NORM)
    opt.step()
    sched.step()
    opt.zero_grad(set_to_none=True)
    loss_sum, correct = all_sum(run, sums)
    return {"train_loss": loss_sum / n_tokens, "train_accuracy": correct / n_tokens}


@torch.no_grad()
def evaluate(run: Run, loss_mod, valid, device, pad_id) -> dict:
    """Loss and mean token accuracy over the whole validation set."""
    inner = loss_mod.module if hasattr(loss_mod, "module") else loss_mod
    inner.eval()
    sums = [0.0, 0.0, 0.0]
    mine = valid[run.rank::run.world]
    for k in range(0, len(mine), 8):
        loss, correct, count = inner(**to_device(collate(run, mine[k:k + 8], pad_id), device))
        sums = [sums[0] + loss.item(), sums[1] + correct.item(), sums[2] + count.item()]
    inner.train()
    loss_sum, correct, count = all_sum(run, sums)
    return {"valid_loss": loss_sum / count, "valid_mean_token_accuracy": correct / count}


def cancel_requested(run: Run) -> bool:
    """Every rank must agree, or one would wait forever for the others at the next step."""
    asked = float((run.dir / progress.CANCEL).exists())
    return all_sum(run, [asked])[0] > 0


def build(run: Run, device: str, ckpt: Path | None):
    """Tokenizer and LoRA model: fresh adapters, or the checkpoint's when resuming."""
    path = models.resolve(run.spec["base_model"])
    tok = models.load_tokenizer(path)
    base = models.load_base(path, device, run.opts["quantize"])
    peft_model = models.with_lora(base, run.opts, run.seed, adapter=ckpt / "adapter" if ckpt else None)
    return path, tok, peft_model


def wrap(run: Run, peft_model, device: str):
    loss_mod = TokenLoss(peft_model)
    if run.world == 1:
        return loss_mod
    ids = [torch.device(device).index] if device.startswith("cuda") else None
    return nn.parallel.DistributedDataParallel(loss_mod, device_ids=ids)


def train(run: Run, device: str, resume: bool) -> None:
    """Train the run to the end, or until cancelled (then raise Cancelled)."""
    ckpt = latest_checkpoint(run.dir) if resume else None
    base_path, tok, peft_model = build(run, device, ckpt)
    train_set, n_examples = encode_file(run, tok, run.spec["training_file"])
    valid = encode_file(run, tok, run.spec["validation_file"])[0] if run.spec.get("validation_file") else []
    hp = resolve_hyperparameters(run.spec.get("hyperparameters") or {}, run.opts, n_examples)
    per_epoch = math.ceil(len(train_set) / hp["batch_size"])
    total = hp["n_epochs"] * per_epoch
    run.report("hyperparameters", hyperparameters={**hp, "seed": run.seed}, total_steps=total)
    loss_mod = wrap(run, peft_model, device)
    params = [p for p in peft_model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=hp["learning_rate"], weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, total))
    step = restore(ckpt, opt, sched) if ckpt else 0
    if ckpt:
        run.event(f"Resumed from checkpoint at step {step}/{total}")
    run.event(f"Fine-tuning started: {len(train_set)} examples, {hp['n_epochs']} epochs, {total} steps on {device}"
              + (f" x {run.world} processes (DDP)" if run.world > 1 else ""))
    loop(run, dict(loss_mod=loss_mod, peft_model=peft_model, opt=opt, sched=sched, device=device,
                   pad_id=tok.pad_token_id, train_set=train_set, valid=valid, hp=hp,
                   per_epoch=per_epoch, total=total), step)
    trained_tokens = hp["n_epochs"] * sum(len(e.input_ids) for e in train_set)
    finish(run, peft_model, tok, base_path, trained_tokens)


def loop(run: Run, s: dict, step: int) -> None:
    lengths = [len(e.input_ids) for e in s["train_set"]]
    grouped = not run.opts["packing"]
    started, first, plans = time.time(), step, {}
    while step < s["total"]:
        if cancel_requested(run):
            save_and_report(run, s, step, epoch_end=False)
            raise Cancelled(step)
        epoch, index = divmod(step, s["per_epoch"])
        if epoch not in plans:
            plans = {epoch: batching.plan_epoch(lengths, s["hp"]["batch_size"], run.seed, epoch, grouped)}
        examples = [s["train_set"][i] for i in plans[epoch][index]]
        metrics = train_step(run, s["loss_mod"], examples, s["opt"], s["sched"], s["device"], s["pad_id"])
        step += 1
        epoch_end = index == s["per_epoch"] - 1
        every = run.opts["eval_every"]
        if s["valid"] and (epoch_end or (every and step % every == 0)):
            metrics.update(evaluate(run, s["loss_mod"], s["valid"], s["device"], s["pad_id"]))
        eta = (time.time() - started) / (step - first) * (s["total"] - step)
        run.report("metrics", data={"step": step, **metrics, "total_steps": s["total"]}, eta_seconds=eta)
        if step % 10 == 0 or step == s["total"]:
            run.event(f"Step {step}/{s['total']}: training loss={metrics['train_loss']:.4f}")
        if epoch_end:
            save_and_report(run, s, step, epoch_end=True)


def save_and_report(run: Run, s: dict, step: int, epoch_end: bool) -> None:
    if run.main:
        path = save_checkpoint(run, s["peft_model"], s["opt"], s["sched"], step)
        run.report("checkpoint", step=step, path=str(path / "adapter"),
                   model_id=f"local:{run.spec['run_id']}:step-{step}")
    if run.world > 1:
        torch.distributed.barrier()


def finish(run: Run, peft_model, tok, base_path: str, trained_tokens: int) -> None:
    """Save the final adapter with the tokenizer beside it, and report the model."""
    if run.main:
        out = run.dir / "adapter"
        peft_model.save_pretrained(out)
        tok.save_pretrained(out)
        (out / models.BASE_MARKER).write_text(base_path)
        model_id = f"local:{run.spec['run_id']}"
        run.event(f"New fine-tuned model created: {model_id}")
        run.report("result", model=model_id, path=str(out), trained_tokens=trained_tokens)
        run.report("status", status="succeeded")
        run.event("The job has successfully completed")
