"""Which examples go in each optimizer step, and how a micro-batch becomes tensors.

Two layouts, neither padded to max_length:
- packed (default): a micro-batch is one row, examples end to end, position ids restarting
  at 0 for each and no attention mask; transformers then keeps the examples from attending
  to one another (only with use_cache=False: see the packing test).
- grouped: examples of similar length are batched together and padded to the longest.
"""

from __future__ import annotations

import math
import random

from ..modeling.encoding import IGNORE, Encoded

MEGABATCH = 16  # steps whose examples are sorted by length together (grouped layout)


def plan_epoch(lengths: list[int], batch_size: int, seed: int, epoch: int, grouped: bool) -> list[list[int]]:
    """Example indices for each optimizer step of one epoch; the same for the same seed."""
    order = list(range(len(lengths)))
    random.Random(f"{seed}:{epoch}").shuffle(order)
    if grouped:
        span = batch_size * MEGABATCH
        order = [i for k in range(0, len(order), span)
                 for i in sorted(order[k:k + span], key=lambda i: -lengths[i])]
    steps = [order[k:k + batch_size] for k in range(0, len(order), batch_size)]
    if grouped:
        random.Random(f"{seed}:{epoch}:steps").shuffle(steps)
    return steps


def steps_per_epoch(n_examples: int, batch_size: int) -> int:
    return math.ceil(n_examples / batch_size)


def steps(lengths: list[int], batch_size: int, seed: int, epochs: int, grouped: bool, start: int = 0):
    """(step, example indices, last of its epoch?) for each optimizer step after `start`.

    Steps count from 1 across epochs; the same seed gives the same steps, so a run resumed
    from a checkpoint at step `start` trains exactly the batches it would have.
    """
    per_epoch = steps_per_epoch(len(lengths), batch_size)
    for epoch in range(start // per_epoch, epochs):
        plan = plan_epoch(lengths, batch_size, seed, epoch, grouped)
        for index in range(max(0, start - epoch * per_epoch), per_epoch):
            yield epoch * per_epoch + index + 1, plan[index], index == per_epoch - 1


def split(items: list, parts: int) -> list[list]:
    """items in `parts` contiguous chunks whose sizes differ by at most one (none empty)."""
    parts = max(1, min(parts, len(items)))
    size, extra = divmod(len(items), parts)
    out, start = [], 0
    for p in range(parts):
        end = start + size + (p < extra)
        out.append(items[start:end])
        start = end
    return out


def targets(enc: Encoded) -> list[int]:
    """The label each position predicts: the next token's label (last position: none)."""
    return enc.labels[1:] + [IGNORE]


def collator(packing: bool, pad_id: int, device: str):
    """A function from examples to a batch of tensors on device, packed or padded."""

    def collate(examples: list[Encoded]) -> dict:
        batch = collate_packed(examples) if packing else collate_padded(examples, pad_id)
        return {k: (v.to(device) if v is not None else None) for k, v in batch.items()}

    return collate


def collate_packed(examples: list[Encoded]) -> dict:
    """One padding-free row: ids end to end, position ids restarting per example."""
    import torch

    ids, pos, tgt = [], [], []
    for enc in examples:
        ids += enc.input_ids
        pos += list(range(len(enc.input_ids)))
        tgt += targets(enc)
    as_row = lambda xs: torch.tensor([xs], dtype=torch.long)  # noqa: E731
    return {"input_ids": as_row(ids), "position_ids": as_row(pos), "attention_mask": None,
            "targets": as_row(tgt)}


def collate_padded(examples: list[Encoded], pad_id: int, length: int | None = None) -> dict:
    """A right-padded batch: to the longest example, or to `length` (the naive baseline)."""
    import torch

    width = length or max(len(e.input_ids) for e in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    tgt = torch.full((len(examples), width), IGNORE, dtype=torch.long)
    for row, enc in enumerate(examples):
        n = len(enc.input_ids)
        ids[row, :n] = torch.tensor(enc.input_ids)
        mask[row, :n] = 1
        tgt[row, :n] = torch.tensor(targets(enc))
    return {"input_ids": ids, "position_ids": None, "attention_mask": mask, "targets": tgt}


def padding_fraction(batches: list[dict]) -> float:
    """Share of the token slots computed on that hold no real token."""
    slots = sum(b["input_ids"].numel() for b in batches)
    real = sum(b["input_ids"].numel() if b["attention_mask"] is None else int(b["attention_mask"].sum())
               for b in batches)
    return 1 - real / slots if slots else 0.0
