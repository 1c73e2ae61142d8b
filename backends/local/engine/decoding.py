"""Decoding many rows at once: one KV cache for the running batch, rows joining and leaving it.

The batch's cache is left-padded to a common length (as transformers' generate pads a batch),
so one forward step serves every running row whatever its length. A row joins with the cache
its prompt made (the shorter side is padded on the left) and leaves at once, taking its row
of the cache with it; columns left empty by a departed long row are trimmed. Positions come
from each row's own count of real tokens, so a row decodes as it would alone.

Heavy: torch is imported inside the functions; the pool's thread calls them.
"""

from __future__ import annotations


class Batch:
    """The rows decoding together: their cache, padding mask, positions and next input tokens."""

    def __init__(self, model, cache_arg: str):
        self.model, self.cache_arg = model, cache_arg
        self.rows: list = []
        self.cache = self.mask = self.pos = self.next = None

    def join(self, rows: list, fed: Fed) -> None:
        """Add rows whose prompts are in `fed` (its cache, mask, positions, first tokens)."""
        import torch

        if not self.rows:
            self.rows, self.cache, self.mask, self.pos, self.next = list(rows), fed.cache, fed.mask, fed.pos, fed.next
            return
        width = max(self.mask.shape[1], fed.mask.shape[1])
        for mine, theirs in zip(self.cache.layers, fed.cache.layers):
            mine.keys = torch.cat([_pad_kv(mine.keys, width), _pad_kv(theirs.keys, width)])
            mine.values = torch.cat([_pad_kv(mine.values, width), _pad_kv(theirs.values, width)])
        self.mask = torch.cat([_pad_mask(self.mask, width), _pad_mask(fed.mask, width)])
        self.pos, self.next = torch.cat([self.pos, fed.pos]), torch.cat([self.next, fed.next])
        self.rows += rows

    def leave(self, gone: set) -> None:
        """Drop the rows in `gone` and the padding columns no remaining row needs."""
        import torch

        keep = [i for i, row in enumerate(self.rows) if row not in gone]
        if len(keep) == len(self.rows):
            return
        if not keep:
            self.rows, self.cache, self.mask, self.pos, self.next = [], None, None, None, None
            return
        index = torch.tensor(keep, device=self.mask.device)
        mask = self.mask[index]
        start = int(mask.any(0).int().argmax())  # the first column some remaining row uses
        for layer in self.cache.layers:
            layer.keys, layer.values = layer.keys[index, :, start:], layer.values[index, :, start:]
        self.rows = [self.rows[i] for i in keep]
        self.mask, self.pos, self.next = mask[:, start:], self.pos[index], self.next[index]

    def step(self):
        """One forward step for every row: the logits of each row's next token."""
        self.mask = _pad_mask(self.mask, self.mask.shape[1] + 1, value=1, left=False)
        out = self.model(input_ids=self.next[:, None], attention_mask=self.mask, position_ids=self.pos[:, None],
                         use_cache=True, **{self.cache_arg: self.cache})
        self.pos = self.pos + 1
        return out.logits[:, -1]


class Fed:
    """Prompts read into a fresh cache: the cache, its padding mask, positions, and their logits."""

    def __init__(self, model, cache_arg: str, prompts: list[list[int]], pad_id: int):
        import torch
        from transformers import DynamicCache

        device, width = model.device, max(len(p) for p in prompts)
        self.mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=device)
        ids = torch.tensor([[pad_id] * (width - len(p)) + p for p in prompts], device=device)
        positions = (self.mask.cumsum(-1) - 1).masked_fill(self.mask == 0, 1)  # as generate() makes them
        self.cache = DynamicCache(config=model.config)
        self.logits = _forward(model, cache_arg, self.cache, ids, self.mask, positions)
        self.pos = self.mask.sum(1)
        self.next = None  # each row's first token, once chosen

    @classmethod
    def alone(cls, model, cache_arg: str, row, budget: int) -> Fed | None:
        """Read up to budget more tokens of one long prompt into its own cache; the Fed once it is all in."""
        import torch
        from transformers import DynamicCache

        start, stop = row.fed, min(len(row.prompt), row.fed + budget)
        device = model.device
        if row.cache is None:
            row.cache = DynamicCache(config=model.config)
        ids = torch.tensor([row.prompt[start:stop]], device=device)
        mask = torch.ones(1, stop, dtype=torch.long, device=device)
        positions = torch.arange(start, stop, device=device)[None]
        logits = _forward(model, cache_arg, row.cache, ids, mask, positions)
        row.fed = stop
        if stop < len(row.prompt):
            return None
        fed = cls.__new__(cls)
        fed.cache, fed.mask, fed.logits, fed.pos, fed.next = row.cache, mask, logits, mask.sum(1), None
        row.cache = None
        return fed


def _forward(model, cache_arg: str, cache, ids, mask, positions):
    """The logits of the last position only (as generate() asks), filling cache."""
    out = model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True, logits_to_keep=1,
                **{cache_arg: cache})
    return out.logits[:, -1]


def cache_arg(model) -> str:
    """The name forward() gives its KV cache: `cache` in transformers >= 5.24, `past_key_values` before."""
    import inspect

    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def batchable(model) -> bool:
    """Can rows of this model share a padded cache? Plain full-attention caches only (no sliding windows)."""
    from transformers import DynamicCache
    from transformers.cache_utils import DynamicLayer

    return all(type(layer) is DynamicLayer for layer in DynamicCache(config=model.config).layers)


def _pad_kv(t, width: int):
    import torch.nn.functional as F

    return F.pad(t, (0, 0, width - t.shape[-2], 0)) if t.shape[-2] < width else t


def _pad_mask(mask, width: int, value: int = 0, left: bool = True):
    import torch.nn.functional as F

    extra = width - mask.shape[1]
    return F.pad(mask, (extra, 0) if left else (0, extra), value=value) if extra else mask


# --- choosing tokens -------------------------------------------------------------------------


def choose(logits, rows: list) -> list[int]:
    """Each row's next token: the most likely one when its temperature is 0, else sampled."""
    greedy = logits.argmax(-1).tolist()
    return [greedy[i] if row.ask.temperature == 0 else sample(logits[i], row.ask.temperature, row.ask.top_p,
                                                              row.generator)
            for i, row in enumerate(rows)]


def sample(logits, temperature: float, top_p: float, generator) -> int:
    """A token drawn from softmax(logits / temperature), kept to the smallest top-p set."""
    import torch

    probs = torch.softmax(logits.float().cpu() / temperature, -1)
    if top_p < 1.0:
        ordered, order = probs.sort(descending=True)
        beyond = ordered.cumsum(0) - ordered >= top_p  # the mass before them already reaches top_p
        probs[order[beyond]] = 0.0
    return int(torch.multinomial(probs, 1, generator=generator))


def logprobs(tok, logits, token: int, top: int) -> dict:
    """OpenAI's logprobs entry for one chosen token (the model's own distribution, before sampling)."""
    import torch

    lps = torch.log_softmax(logits.float(), -1)
    entry = _entry(tok, token, float(lps[token]))
    best = zip(*lps.topk(top)) if top else ()
    entry["top_logprobs"] = [_entry(tok, int(i), float(v)) for v, i in best]
    return entry


def _entry(tok, token: int, logprob: float) -> dict:
    text = tok.decode([token])
    return {"token": text, "logprob": logprob, "bytes": list(text.encode("utf-8"))}
