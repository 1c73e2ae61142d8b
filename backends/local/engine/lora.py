"""Many LoRA adapters on one base model, each row of a batch with its own.

peft loads and parses an adapter (its config, rank and alpha patterns, weight files); the
pool then applies the adapters itself, with a forward hook on each adapted linear layer of the
plain base model. Why not peft's own mixed batches (`adapter_names`): they compute every
adapter of the batch apart, a gather, two products and a scatter per adapter per layer, and
register their hooks anew at every forward (measured on SmolLM2-135M, 8 rows each with its own
adapter, one decoding step on CPU: 3.1x the bare model's time). Here a mixed batch costs two
products per layer whatever the number of adapters: x times the A's of a set of adapters at once,
each row's columns kept by a mask, times their B's (scaled) at once. The set grows to take in
the adapters rows need and is rebuilt only when one it lacks is asked for, so rows joining and
leaving cost no copies of weights.

With one adapter for the whole batch the arithmetic is peft's own (x A^T B^T * scaling, added
to the base output), so a lone request answers token for token as the PeftModel would. Slot 0
is "no adapter": the base model, untouched, and no hook runs at all.

When one adapter is all that was ever asked for, or the last MERGE_AFTER requests in a row used it
(one fine-tune served alone: `ftm chat`, `ftm eval`, a server with one model), it is merged into the
base weights as peft's merge_and_unload does, and its rows cost what the merged model costs
(applying it at run time costs 10-15% on CPU): answers are then those of `ftm export`'s model.
Another adapter or the bare base restores the weights bit for bit from the model's safetensors
files (never by subtracting, which would drift); each restore doubles the run of requests the next
merge waits for, so traffic that keeps switching settles on the hooks instead of reloading.
"""

from __future__ import annotations

import math
from pathlib import Path

from ftmanager.errors import InvalidInput

PLAIN = {"peft_type": "LORA", "use_dora": False, "bias": "none"}
MERGE_AFTER = 4  # requests in a row for one adapter before it is merged (doubled by each restore)
LAYOUT = 16  # adapters a mixed batch's products may span beyond twice those its rows use


class Adapters:
    """The adapters loaded on one base model, by directory, and which rows use which."""

    def __init__(self, model, base_dir: str):
        self.model = model
        self.slots: dict[str, int] = {}  # adapter directory -> slot (1, 2, ...)
        self.rank: dict[int, int] = {}  # slot -> its largest rank (its width in a mixed batch)
        self.sites: dict[str, _Site] = {}  # linear layer name -> its adapters' weights
        self.selection: int | _Mixed = 0  # one slot for every row, or each row's
        self.layout: tuple[int, ...] = ()  # the slots whose A's and B's mixed batches multiply by
        self.merged, self.merges = 0, 0  # the slot merged into the base weights (0: none); how often
        self._streak = (0, 0)  # the latest requests' slot, and how many in a row used it
        self._after = MERGE_AFTER  # how long a streak earns a merge
        self._seen: set[int] = set()  # every slot a request has used
        self._files = _weight_files(base_dir)  # weight name -> safetensors file, to restore from
        self._hooks: list = []

    def slot(self, path: str) -> int:
        """The slot of the adapter at path, loaded now if it is new."""
        path = str(Path(path).resolve())
        if path not in self.slots:
            self._load(path, len(self.slots) + 1)
            self.slots[path] = len(self.slots) + 1
        return self.slots[path]

    def admit(self, slot: int) -> None:
        """Note a new request's adapter (what decides merging)."""
        last, count = self._streak
        self._streak = (slot, count + 1 if slot == last else 1)
        self._seen.add(slot)

    def select(self, slots: list[int], others: list[int] = ()) -> None:
        """Which adapter each row of the next forward passes through (merging or restoring first);
        others: the rows that wait for another forward, which a merge must suit too."""
        one = slots[0] if all(s == slots[0] for s in slots) else None
        if self.merged and one != self.merged:
            self._restore()
        elif not self.merged and one and all(s == one for s in others) and self._settled(one):
            self._merge(one)
        if self.merged:
            one = 0  # its rows need nothing more
        self.selection = one if one is not None else self._mixed(slots)
        self._hook(one != 0)

    def _mixed(self, slots: list[int]) -> _Mixed:
        needed = set(slots) - {0}
        if not needed <= set(self.layout):
            grown = needed | set(self.layout)
            self.layout = tuple(sorted(grown if len(grown) <= max(LAYOUT, 2 * len(needed)) else needed))
        last = self.selection
        if isinstance(last, _Mixed) and (last.layout, last.slots) == (self.layout, slots):
            return last  # the same rows as the step before: the same mask
        return _Mixed(slots, self.layout, self.rank, self.model.device)

    def _hook(self, on: bool) -> None:
        """Hooks only while some row needs them: an unhooked layer runs at the bare model's speed."""
        if on and not self._hooks:
            self._hooks = [site.layer.register_forward_hook(site.hook) for site in self.sites.values()]
        elif not on:
            while self._hooks:
                self._hooks.pop().remove()

    def _settled(self, slot: int) -> bool:
        """Worth merging: the only adapter ever asked for, or the one the latest requests all used;
        and its layers can be restored from files."""
        alone = self._seen == {slot} or self._streak[0] == slot and self._streak[1] >= self._after
        return alone and all(site.restorable for site in self.sites.values() if slot in site.lora)

    def _merge(self, slot: int) -> None:
        for site in self.sites.values():
            if slot in site.lora:
                a, b, scaling = site.lora[slot]
                delta = (b @ a).T if site.transposed else b @ a
                site.layer.weight.data += delta * scaling  # peft's merge: W + (B A) * scaling
        self.merged, self.merges = slot, self.merges + 1

    def _restore(self) -> None:
        """The base weights back, bit for bit, from the files they were loaded from (one opening per
        layer: the file's pages stay mapped, and counted as this process's memory, while it is open)."""
        from safetensors import safe_open

        for site in self.sites.values():
            if self.merged in site.lora:
                with safe_open(self._files[site.key], framework="pt") as f:
                    site.layer.weight.data.copy_(f.get_tensor(site.key))
        self.merged, self._after = 0, self._after * 2

    def _load(self, path: str, slot: int) -> None:
        from peft import LoraConfig
        from peft.utils import load_peft_weights

        config = LoraConfig.from_pretrained(path)
        _check_plain(config, path)
        pairs = _pairs(load_peft_weights(path, device="cpu"))
        layers = dict(self.model.named_modules())
        missing = [name for name in pairs if name not in layers]
        if missing:
            raise InvalidInput(f"the adapter {path} adapts layers its base model lacks ({missing[0]})",
                               "Serve it on the base model it was trained from.")
        shared = _shared_weights(self.model)
        for name, (a, b) in pairs.items():
            if name not in self.sites:
                restorable = f"{name}.weight" in self._files and id(layers[name].weight) not in shared
                self.sites[name] = _Site(self, name, layers[name], restorable)
            self.sites[name].add(slot, a, b, _scaling(config, name, a.shape[0]))
        self.rank[slot] = max(a.shape[0] for a, _ in pairs.values())
        self._hook(False)  # hooked again at the next select, new layers included


class _Mixed:
    """A batch whose rows use different adapters: the layout of slots and each row's column mask."""

    def __init__(self, slots: list[int], layout: tuple[int, ...], rank: dict[int, int], device):
        import torch

        self.layout, self.slots = layout, list(slots)
        mask, start = torch.zeros(len(slots), sum(rank[s] for s in layout)), 0
        for slot in layout:
            rows = [i for i, s in enumerate(slots) if s == slot]
            mask[rows, start:start + rank[slot]] = 1.0
            start += rank[slot]
        self.mask = mask[:, None, :].to(device)  # (rows, 1, columns): the same for every position


def _check_plain(config, path: str) -> None:
    """Refuse what the hooks cannot apply: DoRA, trained biases, extra trained modules (fan_in_fan_out,
    GPT-2's transposed layers, is a matter of merging only: the hooks see inputs and outputs)."""
    odd = [k for k, v in PLAIN.items() if getattr(config, k, v) != v]
    if odd or getattr(config, "modules_to_save", None) or getattr(config, "layer_replication", None):
        what = ", ".join(odd) or "modules_to_save"
        raise InvalidInput(f"the adapter {path} is not a plain LoRA adapter ({what})",
                           "Export it merged (`ftm export --merge`) and serve the merged model.")


def _pairs(weights: dict) -> dict[str, tuple]:
    """Layer name -> (lora_A weight, lora_B weight), from a saved peft state dict."""
    pairs: dict[str, list] = {}
    for key, tensor in weights.items():
        stem, _, kind = key.removeprefix("base_model.model.").rpartition(".lora_")
        if kind not in ("A.weight", "B.weight"):
            raise InvalidInput(f"the adapter holds {key}, which is not a LoRA linear weight",
                               "Export it merged (`ftm export --merge`) and serve the merged model.")
        pairs.setdefault(stem, [None, None])[kind == "B.weight"] = tensor
    return {name: (a, b) for name, (a, b) in pairs.items()}


def _scaling(config, name: str, rank: int) -> float:
    """peft's scaling for one layer: alpha / r (alpha / sqrt(r) with rsLoRA), patterns honoured."""
    from peft.utils.other import get_pattern_key

    alpha = config.alpha_pattern.get(get_pattern_key(config.alpha_pattern.keys(), name), config.lora_alpha)
    return alpha / math.sqrt(rank) if config.use_rslora else alpha / rank


def _weight_files(base_dir: str) -> dict[str, str]:
    """Weight name -> the safetensors file holding it, for a model directory ({} for a hub id)."""
    import json

    from safetensors import safe_open

    folder = Path(base_dir)
    index = folder / "model.safetensors.index.json"
    if index.exists():
        return {k: str(folder / f) for k, f in json.loads(index.read_text())["weight_map"].items()}
    if not (folder / "model.safetensors").exists():
        return {}
    with safe_open(folder / "model.safetensors", framework="pt") as f:
        return dict.fromkeys(f.keys(), str(folder / "model.safetensors"))


def _shared_weights(model) -> set[int]:
    """Parameters two modules share (tied embeddings): merging into one would change the other."""
    seen: dict[int, int] = {}
    for _name, param in model.named_parameters(remove_duplicate=False):
        seen[id(param)] = seen.get(id(param), 0) + 1
    return {key for key, count in seen.items() if count > 1}


class _Site:
    """One adapted linear layer: each slot's A, B and scaling, and the hook that adds them."""

    def __init__(self, owner: Adapters, name: str, layer, restorable: bool):
        from transformers.pytorch_utils import Conv1D

        self.owner, self.name, self.layer, self.restorable = owner, name, layer, restorable
        self.key = f"{name}.weight"  # its weight's name in the model's files
        self.transposed = isinstance(layer, Conv1D)  # GPT-2's layers keep their weight (in, out)
        self.lora: dict[int, tuple] = {}  # slot -> (A, B, scaling)
        self._joined = None  # (layout, its slots' A's stacked, their B's side by side and scaled)

    def add(self, slot: int, a, b, scaling: float) -> None:
        import torch

        like = self.layer.weight
        # As peft does by default: adapters of a half-precision base are kept in float32.
        dtype = torch.float32 if like.dtype in (torch.float16, torch.bfloat16) else like.dtype
        self.lora[slot] = (a.to(like.device, dtype), b.to(like.device, dtype), scaling)
        self._joined = None

    def hook(self, _module, args, out):
        """The layer's output plus each row's adapter."""
        import torch.nn.functional as F

        x, sel = args[0], self.owner.selection
        if isinstance(sel, int):
            if sel not in self.lora:
                return None
            a, b, scaling = self.lora[sel]
            return (out + F.linear(F.linear(x.to(a.dtype), a), b) * scaling).to(out.dtype)
        a, b = self._join(sel.layout)
        return (out + F.linear(F.linear(x.to(a.dtype), a) * sel.mask, b)).to(out.dtype)

    def _join(self, layout: tuple[int, ...]):
        """The layout's A's one above the other and B's (scaled) side by side, each slot as wide as
        its largest rank: zeros where it has a smaller rank or no adapter on this layer."""

        if self._joined is None or self._joined[0] != layout:
            a0, b0, _ = next(iter(self.lora.values()))
            width = sum(self.owner.rank[s] for s in layout)
            a_all, b_all = a0.new_zeros(width, a0.shape[1]), b0.new_zeros(b0.shape[0], width)
            start = 0
            for slot in layout:
                if slot in self.lora:
                    a, b, scaling = self.lora[slot]
                    a_all[start:start + a.shape[0]], b_all[:, start:start + a.shape[0]] = a, b * scaling
                start += self.owner.rank[slot]
            self._joined = (layout, a_all, b_all)
        return self._joined[1:]
