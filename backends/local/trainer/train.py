"""The training loop the worker runs, top to bottom: load, encode, train, checkpoint, report.

`train()` reads as one script: the model and data, how many steps, the optimizer, then the
loop. Only rank 0 writes the progress file and checkpoints; under DDP every rank trains on
its share of each optimizer step and the sums are all-reduced, so the loss reported is the
same as one process would see. The same loop trains LoRA weights (qlora, lora) or every
weight (full): only what the optimizer is given differs. A DPO run trains preference pairs
through the same loop: its Objective (trainer/preference.py) stands in for the supervised one.
"""

from __future__ import annotations

import json
import time
from contextlib import nullcontext
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..modeling import encoding, loading as models, templates
from . import batching, preference, rundir
from .checkpoints import Best, latest_checkpoint, restore, save_checkpoint
from .kernels import attend_per_example, fuse_lora
from .options import resolve_options
from ftmanager.errors import InvalidInput
from ftmanager.facts import PAUSED, RUNNING

WARMUP_FRACTION = 0.03
MAX_GRAD_NORM = 1.0
EVAL_BATCH = 8  # validation examples per forward pass
PAUSE_POLL = 0.5  # seconds between looks at the pause file while paused
CANCEL, PAUSE = "cancel", "pause"


class Cancelled(Exception):
    """The user cancelled the run; args[0] is the step its last checkpoint holds."""


class Run:
    """One run directory and this process's place in it: spec, options, rank and device."""

    def __init__(self, run_dir: Path, rank: int = 0, world: int = 1, device: str = "cpu"):
        self.dir, self.rank, self.world, self.device = Path(run_dir), rank, world, device
        self.spec = json.loads((self.dir / rundir.SPEC).read_text())
        self.opts = resolve_options(self.spec.get("options") or {})
        self.seed = int(self.spec.get("seed") or 0)
        self.main = rank == 0

    def report(self, kind: str, **data) -> None:
        if self.main:
            rundir.append(self.dir, kind, **data)

    def event(self, message: str, level: str = "info") -> None:
        self.report("event", message=message, level=level)

    def all_sum(self, values: list[float]) -> list[float]:
        """values summed over every rank (as they are in a single process)."""
        if self.world == 1:
            return values
        t = torch.tensor(values, dtype=torch.float64, device=self.device)
        torch.distributed.all_reduce(t)
        return t.tolist()

    def autocast(self):
        """Around a forward pass: bf16 autocast where the run asks for it (-p bf16=true), else
        nothing. Off by default: float32 on a CPU gives the same losses on every CPU."""
        if not self.opts["bf16"]:
            return nullcontext()
        return torch.autocast(self.device.split(":")[0], dtype=torch.bfloat16)

    def asked(self) -> str | None:
        """CANCEL or PAUSE when the user asked for it; every rank gets the same answer, or one
        would wait forever for the others at the next step."""
        cancel, pause = self.all_sum([float((self.dir / rundir.CANCEL).exists()),
                                      float((self.dir / rundir.PAUSE).exists())])
        return CANCEL if cancel else PAUSE if pause else None


def train(run: Run, resume: bool) -> None:
    """Train the run to its last step (or until early stopping), waiting while paused; raise
    Cancelled when cancelled."""
    # The model, and the examples as token ids with labels on the trained tokens only, written in
    # the model's chat template or, for a base model without one, a prompt format
    ckpt = latest_checkpoint(run.dir) if resume else None
    base_path = models.start_from(run.spec, run.dir)  # an earlier run's model where the run builds on one
    tok = models.load_tokenizer(base_path)
    template = prompt_format(run, tok)
    model = models.trainable(base_path, run.device, run.opts, run.seed, ckpt / weights(run) if ckpt else None)
    dpo_settings = preference.settings(run.spec, run.opts)  # None: a supervised run
    goal = preference.objective(run, dpo_settings, base_path) if dpo_settings else supervised(run)
    train_set = encode_file(run, tok, run.spec["training_file"], template, goal.encode_all)[0]
    valid = (encode_file(run, tok, run.spec["validation_file"], template, goal.encode_all)[0]
             if run.spec.get("validation_file") else [])
    collate = goal.collator(tok)
    save = lambda out: models.save(model, tok, out, template)  # noqa: E731  (adapter or whole model)

    # How long: n_epochs passes over the examples, batch_size examples per optimizer step
    hp = run.spec["resolved_hyperparameters"]  # resolved once, by the backend at submit
    epochs, batch_size = hp["n_epochs"], hp["batch_size"]
    total = epochs * batching.steps_per_epoch(len(train_set), batch_size)
    run.report("hyperparameters", hyperparameters={**hp, "template": template, "seed": run.seed},
               total_steps=total)

    # AdamW on the trainable weights (LoRA's, or every one), linear warmup then decay; a
    # checkpoint says where to start, and what the lowest validation loss was so far
    loss_fn = goal.loss_module(model)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=hp["learning_rate"],
                            weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, total))
    step, best = restore(ckpt, opt, sched, run.opts) if ckpt else (0, Best(run.opts))
    if ckpt:
        run.event(f"Resumed from checkpoint at step {step}/{total}")
    kind = run.opts['training_type'] + (', DPO' if dpo_settings else '')
    run.event(f"Fine-tuning started ({kind}): {len(train_set)} examples, {epochs} epochs, {total} steps "
              f"on {run.device}" + (f" x {run.world} processes (DDP)" if run.world > 1 else ""))

    # The loop: one optimizer step per batch, validation where asked, a checkpoint per epoch
    # (and at each lower validation loss with keep=best)
    lengths, grouped = [goal.tokens(e) for e in train_set], goal.grouped
    every, clock = run.opts["eval_every"], Clock(step)
    loss_fn.train()  # from_pretrained leaves the base in eval mode; validation switches back to this
    plan = batching.steps(lengths, batch_size, run.seed, epochs, grouped, start=step)
    for step, indices, epoch_end in plan:
        metrics = goal.step(run, loss_fn, opt, sched, collate, [train_set[i] for i in indices])
        if valid and (epoch_end or (every and step % every == 0)):
            metrics.update(goal.evaluate(run, loss_fn, collate, valid))
            best.saw(step, metrics["valid_loss"])
        run.report("metrics", data={"step": step, **metrics, "total_steps": total},
                   eta_seconds=clock.eta(step, total))
        if step % 10 == 0 or step == total:
            run.event(f"Step {step}/{total}: training loss={metrics['train_loss']:.4f}")
        saved = epoch_end or best.keeps(step)
        if saved:
            checkpoint(run, save, opt, sched, step, best)
        if best.out_of_patience():
            run.event(f"Early stopping at step {step}: {best}", level="warn")
            break
        if step < total and (asked := run.asked()):  # the user paused or cancelled the run
            if not saved:
                checkpoint(run, save, opt, sched, step, best)
            if asked == PAUSE:
                asked = wait_while_paused(run, step)
                clock = Clock(step)  # the pause is no training time
            if asked == CANCEL:
                raise Cancelled(step)
    ran = batching.steps(lengths, batch_size, run.seed, epochs, grouped)  # to count the tokens of the steps run
    finish(run, save, best, trained_tokens=sum(lengths[i] for s, idx, _ in ran if s <= step for i in idx))


class TokenLoss(nn.Module):
    """Summed loss, correct count and count over trained tokens only.

    The output head runs only on positions that carry a label: on chat data most positions
    are prompt, and the head (vocab x hidden) is a large share of a small model's compute.
    """

    def __init__(self, model):
        super().__init__()
        self.model = model  # registered, so DDP sees the trainable parameters
        fuse_lora(model)
        causal_lm = model.get_base_model() if hasattr(model, "get_base_model") else model
        attend_per_example(causal_lm)
        self.decoder, self.head = causal_lm.get_decoder(), causal_lm.get_output_embeddings()

    def forward(self, input_ids, position_ids, attention_mask, targets):
        out = self.decoder(input_ids=input_ids, position_ids=position_ids,
                           attention_mask=attention_mask, use_cache=False)
        keep = targets != encoding.IGNORE
        logits = self.head(out.last_hidden_state[keep]).float()
        gold = targets[keep]
        loss = F.cross_entropy(logits, gold, reduction="sum")
        return loss, (logits.argmax(-1) == gold).sum(), keep.sum()


def prompt_format(run: Run, tok) -> str:
    """How the run writes its examples: the model's chat template, or a prompt format (said so
    when picked because the model has no chat template)."""
    template, why = templates.choose(tok, run.opts["template"])
    if why:
        run.event(why)
    return template


def supervised(run: Run) -> preference.Objective:
    """Token cross-entropy on the assistant's tokens, packed or padded as the options say."""
    return preference.Objective(
        encoding.encode_all, lambda tok: batching.collator(run.opts["packing"], tok.pad_token_id, run.device),
        lambda model: wrap(run, model), train_step, evaluate, tokens=lambda e: len(e.input_ids),
        grouped=not run.opts["packing"])


def wrap(run: Run, model) -> nn.Module:
    """The loss module, under DDP when there are several processes."""
    loss_fn = TokenLoss(model)
    if run.world == 1:
        return loss_fn
    ids = [torch.device(run.device).index] if run.device.startswith("cuda") else None
    return nn.parallel.DistributedDataParallel(loss_fn, device_ids=ids)


def train_step(run: Run, loss_fn, opt, sched, collate, examples: list[encoding.Encoded]) -> dict:
    """One optimizer step over examples, in micro-batches; returns its metrics."""
    n_tokens = sum(e.n_trained for e in examples)  # the whole step's, on every rank
    parts = max(1, min(run.opts["gradient_accumulation_steps"], len(examples) // run.world))
    micro = batching.split(my_share(run, examples), parts)
    sums = [0.0, 0.0]
    for k, batch in enumerate(micro):
        # DDP syncs gradients on the last micro-batch only
        with nullcontext() if run.world == 1 or k == len(micro) - 1 else loss_fn.no_sync():
            with run.autocast():  # the forward only: backward runs in the dtypes it chose
                loss, correct, _count = loss_fn(**collate(batch))
            # DDP averages gradients over ranks: scale so the result is the step's token mean
            (loss * run.world / n_tokens).backward()
        sums = [sums[0] + loss.item(), sums[1] + correct.item()]
    optimizer_step(loss_fn, opt, sched)
    loss_sum, correct = run.all_sum(sums)
    return {"train_loss": loss_sum / n_tokens, "train_accuracy": correct / n_tokens}


def optimizer_step(loss_fn, opt, sched) -> None:
    """Clip the gradients, step the optimizer and the schedule, clear the gradients."""
    torch.nn.utils.clip_grad_norm_([p for p in loss_fn.parameters() if p.requires_grad], MAX_GRAD_NORM)
    opt.step()
    sched.step()
    opt.zero_grad(set_to_none=True)


def my_share(run: Run, examples: list[encoding.Encoded]) -> list[encoding.Encoded]:
    """This rank's examples of a step; a rank left without any trains one with no labels."""
    mine = examples[run.rank::run.world]
    if mine:
        return mine
    blank = examples[0]
    return [encoding.Encoded(blank.input_ids, [encoding.IGNORE] * len(blank.labels))]


@torch.no_grad()
def evaluate(run: Run, loss_fn, collate, valid: list[encoding.Encoded]) -> dict:
    """Loss and mean token accuracy over the whole validation set."""
    inner = loss_fn.module if hasattr(loss_fn, "module") else loss_fn
    inner.eval()
    sums = [0.0, 0.0, 0.0]
    mine = valid[run.rank::run.world]
    for k in range(0, len(mine), EVAL_BATCH):
        with run.autocast():
            loss, correct, count = inner(**collate(mine[k:k + EVAL_BATCH]))
        sums = [sums[0] + loss.item(), sums[1] + correct.item(), sums[2] + count.item()]
    inner.train()
    loss_sum, correct, count = run.all_sum(sums)
    return {"valid_loss": loss_sum / count, "valid_mean_token_accuracy": correct / count}


def lr_factor(step: int, total: int) -> float:
    """Linear warmup over the first 3% of steps, then linear decay to zero."""
    warm = max(1, int(WARMUP_FRACTION * total))
    return min(1.0, (step + 1) / warm) * max(0.0, (total - step) / total)


def wait_while_paused(run: Run, step: int) -> str | None:
    """Wait, checkpoint saved, until resumed (None) or cancelled (CANCEL)."""
    run.report("status", status=PAUSED)
    run.event(f"Fine-tuning paused at step {step}; checkpoint saved")
    while (asked := run.asked()) == PAUSE:
        time.sleep(PAUSE_POLL)
    if asked is None:
        run.report("status", status=RUNNING)
        run.event(f"Fine-tuning resumed at step {step}")
    return asked


class Clock:
    """Seconds left, at the pace of the steps this process has trained."""

    def __init__(self, step: int):
        self.started, self.first = time.time(), step

    def eta(self, step: int, total: int) -> float:
        return (time.time() - self.started) / max(1, step - self.first) * (total - step)


# --- data ----------------------------------------------------------------------------------


def read_jsonl(path) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def encode_file(run: Run, tok, path, template: str, encode_all=encoding.encode_all) -> tuple[list, int]:
    """Encode a dataset file (chat examples, or pairs by preference's encode_all), reporting
    truncated and dropped examples."""
    examples = read_jsonl(path)
    kept, stats = encode_all(tok, examples, run.opts["max_length"], template)
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


# --- checkpoints and the result -------------------------------------------------------------


def weights(run: Run) -> str:
    """The folder name of what the run trains: the LoRA adapter, or the whole model."""
    return "model" if run.opts["training_type"] == "full" else "adapter"


def checkpoint(run: Run, save, opt, sched, step: int, best: Best) -> None:
    """Save and report a checkpoint (rank 0); every rank waits until it is on disk."""
    if run.main:
        path = save_checkpoint(run.dir / "checkpoints", weights(run), save, opt, sched, step, best)
        run.report("checkpoint", step=step, path=str(path / weights(run)),
                   model_id=f"local:{run.spec['run_id']}:step-{step}")
    if run.world > 1:
        torch.distributed.barrier()


def peak_memory(device: str) -> dict:
    """The most GPU memory this process held, in bytes (for the result); nothing on a CPU."""
    if not device.startswith("cuda"):
        return {}
    return {"peak_gpu_memory": torch.cuda.max_memory_allocated(device)}


def finish(run: Run, save, best: Best, trained_tokens: int) -> None:
    """Save the final weights with the tokenizer beside them (keep=best: the best checkpoint's
    are the run's model), and report the model."""
    if run.main:
        kept = {}
        if best.keep == "best" and best.step is not None:
            out = run.dir / "checkpoints" / f"step-{best.step}" / weights(run)
            kept = {"kept": "best", "step": best.step, "valid_loss": best.loss}
            run.event(f"Kept the checkpoint of step {best.step} as the model: the lowest validation loss "
                      f"({best.loss:.4f})")
        else:
            out = run.dir / weights(run)
            save(out)
        model_id = f"local:{run.spec['run_id']}"
        run.event(f"New fine-tuned model created: {model_id}")
        run.report("result", model=model_id, path=str(out), trained_tokens=trained_tokens, **kept,
                   **peak_memory(run.device))
        run.report("status", status="succeeded")
        run.event("The job has successfully completed")
