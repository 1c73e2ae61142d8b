"""Direct Preference Optimization: the loss of a batch of preference pairs, and its metrics.

A pair is a canonical preference example (ftmanager.data.preference): a prompt (input.messages)
and two answers. Each answer is labelled exactly as SFT labels an assistant turn (chat.encode,
every earlier assistant turn of the prompt weighted 0), so DPO scores the same tokens SFT would
train: the answer and its end-of-turn marker.

The reference model is the policy itself with its LoRA adapter switched off (peft's
disable_adapter()), so LoRA and QLoRA keep one copy of the weights in memory; full fine-tuning
passes a frozen copy. Losses, as TRL's DPOTrainer computes them (checked against it in
tests/test_local_dpo.py):
- sigmoid: -log σ(β·Δ), Δ = (chosen - ref chosen) - (rejected - ref rejected) log-probs; with
  label_smoothing ε it is conservative DPO (cDPO): (1-ε)·-log σ(β·Δ) + ε·-log σ(-β·Δ);
- robust: robust DPO, the unbiased form of the same flip probability ε;
- ipo: (Δ/length - 1/(2β))², Δ's log-probs averaged per answer token.
Metrics carry OpenAI's train_loss beside TRL's names for the rest (OpenAI names none).
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass

from ftmanager.errors import InvalidInput

from ..modeling import encoding as chat
from . import batching

LOSSES = ("sigmoid", "robust", "ipo")


@dataclass(frozen=True)
class Settings:
    """A DPO run's loss settings (OpenAI's beta, TRL's loss_type and label_smoothing)."""

    beta: float = 0.1
    loss: str = "sigmoid"
    label_smoothing: float = 0.0

    def __post_init__(self):
        if not 0 < self.beta:
            raise InvalidInput(f"beta must be above 0, not {self.beta}", "Use e.g. -p beta=0.1.")
        if self.loss not in LOSSES:
            raise InvalidInput(f"unknown DPO loss {self.loss!r}", f"Use one of: {', '.join(LOSSES)}.")
        if not 0 <= self.label_smoothing < 0.5:
            raise InvalidInput(f"label_smoothing must be in [0, 0.5), not {self.label_smoothing}",
                               "Use e.g. -p label_smoothing=0.1 (the chance a preference is flipped).")


@dataclass
class Pair:
    """One preference pair as token ids and SFT labels: the prompt followed by each answer."""

    chosen: chat.Encoded
    rejected: chat.Encoded

    @property
    def truncated(self) -> bool:
        return self.chosen.truncated or self.rejected.truncated


def encode_pair(tokenizer, example: dict, max_length: int, template: str = "chat") -> Pair:
    """A canonical preference example as token ids and labels (only each answer trained)."""
    prompt = [{**m, "weight": 0} if m.get("role") == "assistant" else m for m in example["input"]["messages"]]
    tools = {"tools": example["input"]["tools"]} if example["input"].get("tools") else {}
    side = lambda answer: chat.encode(tokenizer, {"messages": prompt + answer, **tools}, max_length, template)  # noqa: E731
    return Pair(side(example["preferred_output"]), side(example["non_preferred_output"]))


def collate(pairs: list[Pair], pad_id: int, device: str = "cpu") -> dict:
    """One right-padded batch: every chosen sequence, then every rejected one (as TRL lays it out)."""
    batch = batching.collate_padded([p.chosen for p in pairs] + [p.rejected for p in pairs], pad_id)
    return {k: (v.to(device) if v is not None else None) for k, v in batch.items()}


def answer_logps(model, batch: dict):
    """(summed log-probability of each row's labelled tokens, how many there are).

    The output head runs only on the labelled positions (the answers), as SFT's TokenLoss
    does: most of a pair is prompt, and the head (vocabulary x hidden) and a batch x length x
    vocabulary logits tensor are the bulk of a small model's time and memory."""
    import torch
    import torch.nn.functional as F

    causal_lm = model.get_base_model() if hasattr(model, "get_base_model") else model
    out = causal_lm.get_decoder()(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                                  use_cache=False)
    targets = batch["targets"]
    keep = targets != chat.IGNORE
    logits = causal_lm.get_output_embeddings()(out.last_hidden_state[keep]).float()
    picked = -F.cross_entropy(logits, targets[keep], reduction="none")
    rows = torch.arange(targets.shape[0], device=targets.device).unsqueeze(1).expand_as(targets)[keep]
    sums = torch.zeros(targets.shape[0], dtype=picked.dtype, device=picked.device).index_add(0, rows, picked)
    return sums, keep.sum(dim=1)


def reference_logps(model, batch: dict, reference=None):
    """answer_logps of the reference: `reference` (a frozen copy) or the model with its adapter off."""
    import torch

    if reference is None and not hasattr(model, "disable_adapter"):
        raise ValueError("full fine-tuning needs a frozen reference copy of the model")
    context = model.disable_adapter() if reference is None else nullcontext()
    with torch.no_grad(), context:
        return answer_logps(reference if reference is not None else model, batch)


def pair_losses(settings: Settings, chosen, rejected, ref_chosen, ref_rejected, lengths=None):
    """The loss of each pair from summed answer log-probs (lengths: answer tokens, for IPO)."""
    import torch.nn.functional as F

    chosen_ratio, rejected_ratio = chosen - ref_chosen, rejected - ref_rejected
    beta, eps = settings.beta, settings.label_smoothing
    if settings.loss == "ipo":
        n_chosen, n_rejected = (n.clamp(min=1) for n in lengths)
        return (chosen_ratio / n_chosen - rejected_ratio / n_rejected - 1 / (2 * beta)) ** 2
    delta = beta * (chosen_ratio - rejected_ratio)
    if settings.loss == "robust":
        return (-(1 - eps) * F.logsigmoid(delta) + eps * F.logsigmoid(-delta)) / (1 - 2 * eps)
    return -(1 - eps) * F.logsigmoid(delta) - eps * F.logsigmoid(-delta)


def loss(model, batch: dict, settings: Settings, reference=None, ref_logps=None) -> tuple:
    """(mean loss over the batch's pairs, its metrics). ref_logps: the reference's answer
    log-probs of this batch when already known (computed once before training, say)."""
    logps, counts = answer_logps(model, batch)
    ref, _ = ref_logps if ref_logps is not None else reference_logps(model, batch, reference)
    chosen, rejected = logps.chunk(2)
    ref_chosen, ref_rejected = ref.chunk(2)
    per_pair = pair_losses(settings, chosen, rejected, ref_chosen, ref_rejected, counts.chunk(2))
    value = per_pair.mean()
    return value, metrics(value, settings.beta, chosen, rejected, ref_chosen, ref_rejected)


def metrics(value, beta: float, chosen, rejected, ref_chosen, ref_rejected) -> dict:
    """A batch's figures: OpenAI's train_loss, then TRL's rewards/* and logps/* (means over pairs)."""
    chosen_rewards = beta * (chosen - ref_chosen).detach()
    rejected_rewards = beta * (rejected - ref_rejected).detach()
    return {
        "train_loss": float(value.detach()),
        "rewards/chosen": float(chosen_rewards.mean()),
        "rewards/rejected": float(rejected_rewards.mean()),
        "rewards/accuracies": float((chosen_rewards > rejected_rewards).float().mean()),
        "rewards/margins": float((chosen_rewards - rejected_rewards).mean()),
        "logps/chosen": float(chosen.detach().mean()),
        "logps/rejected": float(rejected.detach().mean()),
    }


def frozen_copy(model):
    """A reference for full fine-tuning: a copy of the model in eval mode with no gradients."""
    import copy

    reference = copy.deepcopy(model).eval()
    for p in reference.parameters():
        p.requires_grad_(False)
    return reference
