"""DPO in the training loop: what train.py uses in place of its supervised pieces when the run's
method is dpo. Pairs in (trainer/dpo.py encodes them with SFT's labels), the DPO loss out; the
loop, its checkpoints, pause and resume stay train.py's, so a DPO run stops, resumes and
survives a kill exactly as a supervised run does.

The reference: LoRA and QLoRA score it with the adapter switched off (the base, one copy of
the weights); full fine-tuning loads a second, frozen copy of the base, from the base model
and never from a checkpoint, so a resumed run keeps the reference it started with.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from ftmanager.hyperparameters import AUTO, DPO

from ..modeling import loading as models
from . import batching, dpo
from .options import DEFAULT_BETA

EVAL_BATCH = 8  # validation pairs per forward pass


@dataclass
class Objective:
    """What a run optimizes, as the loop needs it: how to encode a file, batch it, build the
    loss module, take one optimizer step and evaluate; tokens(item) sizes an item."""

    encode_all: Callable
    collator: Callable
    loss_module: Callable
    step: Callable
    evaluate: Callable
    tokens: Callable
    grouped: bool  # batch items of similar length together (padded batches)


def settings(spec: dict, opts: dict) -> dpo.Settings | None:
    """The run's DPO settings (beta from its hyperparameters, the loss from its options), or
    None for a supervised run."""
    hp = spec.get("resolved_hyperparameters") or {}
    if hp.get("method") != DPO:
        return None
    beta = hp.get("beta", AUTO)
    return dpo.Settings(DEFAULT_BETA if beta in (None, AUTO) else float(beta), opts["dpo_loss"],
                        opts["label_smoothing"])


def objective(run, chosen: dpo.Settings, base_path: str) -> Objective:
    """The DPO objective for run."""
    collator = lambda tok: (lambda pairs: dpo.collate(pairs, tok.pad_token_id, run.device))  # noqa: E731
    loss_module = lambda model: PairLoss(model, chosen, reference(run, base_path))  # noqa: E731
    return Objective(encode_all_pairs, collator, loss_module, train_step, evaluate, grouped=True,
                     tokens=lambda pair: len(pair.chosen.input_ids) + len(pair.rejected.input_ids))


def encode_all_pairs(tok, rows: list[dict], max_length: int, template: str) -> tuple[list[dpo.Pair], dict]:
    """Encode preference rows; counts as encoding.encode_all gives them (a pair is dropped when
    either answer has no token left after truncation)."""
    kept, stats = [], {"examples": len(rows), "truncated": 0, "dropped": 0, "dropped_lines": []}
    for line, row in enumerate(rows, 1):
        pair = dpo.encode_pair(tok, row, max_length, template)
        stats["truncated"] += pair.truncated
        if not (pair.chosen.n_trained and pair.rejected.n_trained):
            stats["dropped"] += 1
            stats["dropped_lines"].append(line)
            continue
        kept.append(pair)
    return kept, stats


def reference(run, base_path: str):
    """None (the adapter switched off) for LoRA and QLoRA; a frozen base for full fine-tuning."""
    if run.opts["training_type"] != "full":
        return None
    base = models.trainable(base_path, run.device, run.opts, run.seed)
    base.eval()
    for p in base.parameters():
        p.requires_grad_(False)
    return base


class PairLoss(nn.Module):
    """The DPO loss of a batch of pairs, and its figures, each summed over the batch's pairs."""

    def __init__(self, model, chosen: dpo.Settings, ref=None):
        super().__init__()
        self.model, self.settings = model, chosen
        self._reference = (ref,)  # in a tuple: no submodule, so the optimizer and train() never see it

    def forward(self, **batch):
        value, figures = dpo.loss(self.model, batch, self.settings, self._reference[0])
        n = batch["input_ids"].shape[0] // 2
        return value * n, {name: figure * n for name, figure in figures.items()}


def train_step(run, loss_fn, opt, sched, collate, pairs: list[dpo.Pair]) -> dict:
    """One optimizer step over pairs, in micro-batches; the mean loss and figures per pair."""
    sums: dict[str, float] = {}
    for batch in batching.split(pairs, run.opts["gradient_accumulation_steps"]):
        with run.autocast():  # the forward only: backward runs in the dtypes it chose
            value, figures = loss_fn(**collate(batch))
        (value / len(pairs)).backward()
        sums = {name: sums.get(name, 0.0) + figure for name, figure in figures.items()}
    from .train import optimizer_step  # train.py imports this module

    optimizer_step(loss_fn, opt, sched)
    return {name: total / len(pairs) for name, total in sums.items()}


@torch.no_grad()
def evaluate(run, loss_fn, collate, valid: list[dpo.Pair]) -> dict:
    """The mean DPO loss over the validation pairs (valid_loss), and the share ranked right."""
    loss_fn.eval()
    sums: dict[str, float] = {}
    for k in range(0, len(valid), EVAL_BATCH):
        with run.autocast():
            value, figures = loss_fn(**collate(valid[k:k + EVAL_BATCH]))
        sums = {name: sums.get(name, 0.0) + figure for name, figure in figures.items()}
    loss_fn.train()
    return {"valid_loss": sums["train_loss"] / len(valid),
            "valid_rewards/accuracies": sums["rewards/accuracies"] / len(valid),
            "valid_rewards/margins": sums["rewards/margins"] / len(valid)}
