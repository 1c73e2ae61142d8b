"""Model FLOPs of a fine-tuning epoch, and the machine's measured matmul peak at the model's shapes.

Model FLOP utilization (MFU) = the FLOPs the work needs / seconds / the peak. The FLOPs count
useful work only, the same for every contender on the same examples (padding, recomputation and
a loss head over prompt tokens are the contender's own cost, so they lower its MFU):
- every linear layer of the decoder: 2 x in x out per token forward; backward 1x that for the
  activations' gradient (frozen base: LoRA) or 2x (full fine-tuning: also the weights');
- attention scores: QK^T and AV over each example's causal pairs, 2x more in backward;
- the loss head (hidden x vocab) over the trained tokens only: forward, activations' gradient,
  and its weight gradient with full fine-tuning;
- LoRA: each adapted layer's A and B, forward, activations' and weights' gradients.
The peak is timed on the decoder layer's own matmuls (q, k, v, o, gate, up, down) at a packed
row's width of tokens, in the dtype and on the device the training uses.
"""

from __future__ import annotations

import time

LINEAR_NAMES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def layer_shapes(config) -> dict[str, tuple[int, int]]:
    """(in, out) of each linear layer of one Llama-style decoder layer."""
    hidden, inter = config.hidden_size, config.intermediate_size
    head_dim = getattr(config, "head_dim", None) or hidden // config.num_attention_heads
    heads = config.num_attention_heads
    kv = (getattr(config, "num_key_value_heads", None) or heads) * head_dim
    return {"q_proj": (hidden, heads * head_dim), "k_proj": (hidden, kv), "v_proj": (hidden, kv),
            "o_proj": (heads * head_dim, hidden), "gate_proj": (hidden, inter), "up_proj": (hidden, inter),
            "down_proj": (inter, hidden)}


def epoch_flops(config, lengths: list[int], trained: int, method: str = "lora", lora_r: int = 16,
                lora_targets=LINEAR_NAMES) -> float:
    """FLOPs of one pass, forward and backward, over examples of these token lengths with
    `trained` loss-bearing tokens; method "full" trains every weight, else LoRA of rank lora_r."""
    tokens, layers = sum(lengths), config.num_hidden_layers
    shapes = layer_shapes(config)
    per_token = 2 * sum(i * o for i, o in shapes.values()) * layers
    backward = 2 if method == "full" else 1
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    pairs = sum(n * (n + 1) // 2 for n in lengths)  # causal, within each example
    attention = 4 * config.num_attention_heads * head_dim * pairs * layers
    head = 2 * config.hidden_size * config.vocab_size * trained
    flops = tokens * per_token * (1 + backward) + 3 * attention + head * (1 + backward)
    if method != "full":
        targets = LINEAR_NAMES if lora_targets == "all-linear" else lora_targets
        adapter = sum(2 * lora_r * (i + o) for name, (i, o) in shapes.items() if name in targets)
        flops += 3 * tokens * adapter * layers
    return float(flops)


def matmul_peak(config, dtype, device: str = "cpu", tokens: int = 1024, seconds: float = 2.0) -> float:
    """FLOP/s of the decoder layer's matmuls at `tokens` rows, timed here (best of a few rounds)."""
    import torch

    shapes = list(layer_shapes(config).values())
    xs = {i: torch.randn(tokens, i, dtype=dtype, device=device) for i, _ in shapes}
    ws = [torch.randn(i, o, dtype=dtype, device=device) for i, o in shapes]
    work = sum(2 * tokens * i * o for i, o in shapes)

    reps = 20 if str(device).startswith("cuda") else 1  # a GPU's round is too short to time alone

    def one_round() -> float:
        sync(device)
        start = time.perf_counter()
        for _ in range(reps):
            for (i, _), w in zip(shapes, ws):
                torch.mm(xs[i], w)
        sync(device)
        return (time.perf_counter() - start) / reps

    one_round()  # warm-up: kernels chosen, memory allocated
    best, deadline = float("inf"), time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        best = min(best, one_round())
    return work / best


def sync(device: str) -> None:
    """Wait for the device's queued work (a CUDA timer otherwise measures only the launches)."""
    if str(device).startswith("cuda"):
        import torch

        torch.cuda.synchronize(device)
