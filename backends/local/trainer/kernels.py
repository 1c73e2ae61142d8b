"""Two faster forwards the training loop installs: a leaner LoRA Linear and attention over each
example of a packed row alone. Each gives the libraries' own results (tests/test_local_fused_lora.py),
only with less work, as the profile in bench/bench_local.py shows.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def fuse_lora(model) -> int:
    """Give each plain LoRA Linear a leaner forward for training; how many got it.

    peft computes base(x) + B(A(dropout(x))) * scaling: a dropout mask, a rescale and a
    scaling multiply on full-width activations, then an add, each again in backward. Here the
    mask is boolean, the rescale and scaling multiply the rank-r activations (out/r times
    fewer numbers) and B's product is accumulated into the base's output by the same matmul.
    Same weights and distribution, far less elementwise work (profiled: a third of a CPU step).
    Layers with a variant (DoRA), several adapters, a bias on B or a non-Linear base (4-bit)
    keep peft's forward.
    """
    from peft.tuners.lora.layer import Linear as LoraLinear

    fused = 0
    for module in model.modules():
        if type(module) is LoraLinear and _plain_lora(module):
            module.forward = _fused_forward(module)
            fused += 1
    return fused


PACKED = "ftm_packed_sdpa"


def attend_per_example(causal_lm) -> bool:
    """Run a model on sdpa with attention over each example of a packed row alone.

    transformers gives a packed row (position ids restarting at 0 per example) one row-long
    block-causal mask: attention then costs the row's length squared, most of it on pairs across
    examples that the mask only hides (profiled: a quarter of a CPU step). Per example it costs
    the sum of their squares; the result is the same. Anything but a packed row of one batch
    (padded batches, a cache) takes sdpa's own path with the mask transformers built.
    """
    if causal_lm.config._attn_implementation != "sdpa":
        return False
    from transformers import AttentionInterface, AttentionMaskInterface
    from transformers.integrations.sdpa_attention import sdpa_attention_forward
    from transformers.masking_utils import sdpa_mask

    AttentionInterface.register(PACKED, _packed_attention(sdpa_attention_forward))
    AttentionMaskInterface.register(PACKED, sdpa_mask)
    causal_lm.set_attn_implementation(PACKED)
    return True


def _packed_attention(sdpa):
    def attention(module, query, key, value, attention_mask, dropout=0.0, scaling=None, position_ids=None,
                  **kwargs):
        starts = _example_starts(position_ids, query)
        if starts is None or dropout:
            return sdpa(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs)
        # split, not slices: split's backward is one concatenation, each slice's a zero-filled
        # row-long tensor
        sizes = [b - a for a, b in zip(starts, starts[1:])]
        parts = [sdpa(module, q, k, v, None, scaling=scaling, is_causal=True)[0]
                 for q, k, v in zip(*(t.split(sizes, dim=2) for t in (query, key, value)))]
        return torch.cat(parts, dim=1), None  # (batch, tokens, heads, head_dim), as sdpa's

    return attention


def _example_starts(position_ids, query) -> list[int] | None:
    """Where each example of a packed row starts (and the row's end); None if not one packed row."""
    if position_ids is None or query.shape[0] != 1 or position_ids.shape[-1] != query.shape[2]:
        return None
    row = position_ids.reshape(-1)
    starts = (row == 0).nonzero().flatten().tolist()
    if len(starts) < 2 or starts[0] != 0:
        return None
    return starts + [row.shape[0]]


def _plain_lora(layer) -> bool:
    names = list(layer.lora_A)
    return (len(names) == 1 and not layer.lora_variant and type(layer.base_layer) is nn.Linear
            and layer.lora_B[names[0]].bias is None and list(layer.active_adapters) == names)


def _fused_forward(layer):
    name = next(iter(layer.lora_A))
    a, b, drop = layer.lora_A[name], layer.lora_B[name], layer.lora_dropout[name]
    p = drop.p if isinstance(drop, nn.Dropout) else 0.0

    def forward(x, *args, **kwargs):
        if layer.disable_adapters or layer.merged:  # peft's own paths for what training never does
            return type(layer).forward(layer, x, *args, **kwargs)
        out = layer.base_layer(x)
        keep = 1.0
        if p and layer.training:
            keep = 1.0 - p
            x = x * torch.empty(x.shape, dtype=torch.bool, device=x.device).bernoulli_(keep)
        h = F.linear(x.to(a.weight.dtype), a.weight) * (layer.scaling[name] / keep)
        flat = out.view(-1, out.shape[-1])  # the base's output is not kept for its backward
        flat.addmm_(h.view(-1, h.shape[-1]).to(out.dtype), b.weight.t().to(out.dtype))
        return out

    return forward
