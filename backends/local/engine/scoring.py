"""How likely a model finds a reference answer: the log-probability of its tokens (perplexity).

The answer's tokens are exactly those training would label (encoding.encode with every earlier
assistant turn weighted 0), end-of-turn marker included, so a model's perplexity here is the
exponential of the loss it would have on that answer, written in the prompt format the model
was trained in (loading.target says which). Examples are run in batches of similar length,
right-padded, in one forward pass each.
"""

from __future__ import annotations

from ..modeling import encoding, loading as models
from . import merging


def answer_logprobs(result_path: str | None, base_model: str | None, conversations: list[list[dict]],
                    batch_size: int = 16) -> list[tuple[float, int]]:
    """(summed log-probability, token count) of each conversation's last assistant message."""
    tok, model, device = merging.load(result_path, base_model)
    template = models.target(result_path, base_model).template
    limit = getattr(model.config, "max_position_embeddings", None) or 1 << 30
    encoded = [_encode(tok, c, limit, template) for c in conversations]
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i].input_ids))
    results: list[tuple[float, int]] = [(0.0, 0)] * len(encoded)
    for k in range(0, len(order), batch_size):
        batch = order[k:k + batch_size]
        for i, scored in zip(batch, _score_batch(model, device, tok.pad_token_id, [encoded[i] for i in batch])):
            results[i] = scored
    return results


def _encode(tok, conversation: list[dict], limit: int, template: str) -> encoding.Encoded:
    """Token ids with labels on the last assistant message only, as training would label it."""
    *before, answer = conversation
    masked = [{**m, "weight": 0} if m.get("role") == "assistant" else m for m in before]
    return encoding.encode(tok, {"messages": masked + [answer]}, limit, template)


def _score_batch(model, device: str, pad_id: int, batch: list[encoding.Encoded]) -> list[tuple[float, int]]:
    import torch

    width = max(len(e.input_ids) for e in batch)
    ids = torch.tensor([e.input_ids + [pad_id] * (width - len(e.input_ids)) for e in batch], device=device)
    labels = torch.tensor([e.labels + [encoding.IGNORE] * (width - len(e.labels)) for e in batch], device=device)
    mask = torch.tensor([[1] * len(e.input_ids) + [0] * (width - len(e.input_ids)) for e in batch], device=device)
    # Logits only from the first answer token of the batch on: projecting every prompt position
    # onto the vocabulary would cost memory (batch x length x vocabulary floats) and time for nothing.
    first = int((labels != encoding.IGNORE).int().argmax(dim=1).min())
    keep = torch.arange(max(first - 1, 0), width - 1, device=device)
    with torch.inference_mode():
        logits = model(input_ids=ids, attention_mask=mask, use_cache=False, logits_to_keep=keep).logits.float()
    targets = labels[:, keep + 1]
    picked = targets != encoding.IGNORE
    logprobs = torch.zeros(targets.shape, device=device)
    logprobs[picked] = -torch.nn.functional.cross_entropy(logits[picked], targets[picked], reduction="none")
    return [(float(logprobs[row].sum()), int(picked[row].sum())) for row in range(len(batch))]

