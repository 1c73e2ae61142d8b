"""Base models in memory, each serving many LoRA adapters, with requests that arrive together batched.

One _Base per base-model directory holds its tokenizer and model; the first adapter asked for
wraps the model in a PeftModel and later ones are added beside it with load_adapter, so ten
fine-tuned models cost one base plus ten small adapters. One thread per base generates: it
takes every request waiting (up to max_batch, same temperature) and runs them as one batch,
each row with its own adapter (peft's adapter_names; "__base__" is the bare base). Pieces of
text reach each request through its queue as they are generated, which is all streaming needs.

Heavy: torch, transformers and peft are imported in the generating thread only.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator


@dataclass
class Reply:
    """The end of one answer: the whole text, token counts and why it ended."""

    text: str = ""
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    finish_reason: str = "stop"


MAX_BATCH = 8
BASE = "__base__"  # peft's name for "no adapter" in a mixed batch


@dataclass(eq=False)
class Request:
    """One chat to answer: its messages, adapter (None: the base) and sampling."""

    messages: list
    adapter: str | None
    max_tokens: int
    temperature: float
    out: queue.Queue = field(default_factory=queue.Queue)  # str pieces, then a Reply or an exception


class ModelPool:
    """Every base model this server has loaded, each with its adapters."""

    def __init__(self, device: str = "auto", max_batch: int = MAX_BATCH, batch_window: float = 0.0):
        # batch_window: seconds to wait after a request for others to join its batch. 0 adds no
        # latency and still batches whatever arrived while the previous batch was generating.
        self.device, self.max_batch, self.batch_window = device, max_batch, batch_window
        self._bases: dict[str, _Base] = {}
        self._lock = threading.Lock()

    def generate(self, base: str, adapter: str | None, messages: list, max_tokens: int,
                 temperature: float = 0.0) -> Iterator[str | Reply]:
        """Pieces of the reply as they come, then a Reply with the whole text and token counts."""
        adapter = str(Path(adapter).resolve()) if adapter else None
        req = Request(messages, adapter, max_tokens, temperature)
        self._base(base).queue.put(req)
        while True:
            item = req.out.get()
            if isinstance(item, BaseException):
                raise item
            yield item
            if isinstance(item, Reply):
                return

    def loaded(self) -> dict[str, list[str]]:
        """Base directory -> the adapter directories loaded on it (what is in memory)."""
        with self._lock:
            return {path: list(b.adapters) for path, b in self._bases.items() if b.model is not None}

    def batch_sizes(self) -> Counter:
        """How many batches of each size have been generated (how much batching happened)."""
        with self._lock:
            return sum((b.sizes for b in self._bases.values()), Counter())

    def close(self) -> None:
        with self._lock:
            for b in self._bases.values():
                b.queue.put(None)
            self._bases.clear()

    def _base(self, path: str) -> "_Base":
        key = str(Path(path).resolve()) if Path(path).exists() else path
        with self._lock:
            if key not in self._bases:
                self._bases[key] = _Base(key, self.device, self.max_batch, self.batch_window)
            return self._bases[key]


class _Base:
    """One base model and its adapters, with the thread that generates for them."""

    def __init__(self, path: str, device: str, max_batch: int, window: float = 0.0):
        self.path, self.device, self.max_batch, self.window = path, device, max_batch, window
        self.sizes: Counter = Counter()
        self.queue: queue.Queue = queue.Queue()
        self.adapters: dict[str, str] = {}  # adapter directory -> its name in the PeftModel
        self.model = self.tok = None
        self._waiting: list[Request] = []
        threading.Thread(target=self._loop, daemon=True, name=f"ftm-generate-{Path(path).name}").start()

    def _loop(self) -> None:
        while (batch := self._next_batch()) is not None:
            try:
                self._load()
                named = self._with_adapters(batch)
                if named:
                    self._generate(named)
            except BaseException as err:  # noqa: BLE001 - the waiting clients must hear of it
                for req in batch:
                    req.out.put(err)

    def _next_batch(self) -> list[Request] | None:
        """Every request waiting with the first one's temperature (None when closing)."""
        if not self._waiting:
            self._waiting.append(self.queue.get())
        deadline = time.monotonic() + self.window
        while True:
            try:
                wait = deadline - time.monotonic()
                if wait > 0 and len(self._waiting) < self.max_batch:
                    self._waiting.append(self.queue.get(timeout=wait))
                else:
                    self._waiting.append(self.queue.get_nowait())
            except queue.Empty:
                break
        if any(r is None for r in self._waiting):
            for req in self._waiting:
                if req is not None:
                    req.out.put(RuntimeError("the server is shutting down"))
            return None
        first = self._waiting[0].temperature
        batch = [r for r in self._waiting if r.temperature == first][: self.max_batch]
        self._waiting = [r for r in self._waiting if r not in batch]
        self.sizes[len(batch)] += 1
        return batch

    def _load(self) -> None:
        if self.model is not None:
            return
        from ftm_backends.local import model as models

        device = models.pick_device(self.device)
        self.tok = models.load_tokenizer(self.path)
        self.tok.padding_side = "left"  # every prompt ends where generation starts
        self.model = models.load_base(self.path, device, quantize=False).eval()
        self.device = device

    def _with_adapters(self, batch: list[Request]) -> list[tuple[Request, str]]:
        """(request, adapter name) for each request whose adapter loads; the others fail alone."""
        named = []
        for req in batch:
            try:
                named.append((req, self._adapter(req.adapter)))
            except Exception as err:  # noqa: BLE001 - a broken adapter must not fail its neighbours
                req.out.put(err)
        return named

    def _adapter(self, path: str | None) -> str:
        from peft import PeftModel

        if path is None:
            return BASE
        if path not in self.adapters:
            name = f"adapter{len(self.adapters)}"
            if isinstance(self.model, PeftModel):
                self.model.load_adapter(path, adapter_name=name)
            else:
                self.model = PeftModel.from_pretrained(self.model, path, adapter_name=name)
            self.model.eval()
            self.adapters[path] = name
        return self.adapters[path]

    def _generate(self, named: list[tuple[Request, str]]) -> None:
        import torch

        batch = [req for req, _ in named]
        texts = [self.tok.apply_chat_template(r.messages, tokenize=False, add_generation_prompt=True)
                 for r in batch]
        enc = self.tok(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(self.device)
        rows = _Rows(self.tok, batch, _stop_ids(self.tok, self.model), enc["attention_mask"].sum(1).tolist())
        kwargs = {"max_new_tokens": max(r.max_tokens for r in batch), "pad_token_id": self.tok.pad_token_id,
                  "eos_token_id": sorted(rows.stop), "streamer": rows}
        temperature = batch[0].temperature
        kwargs.update({"do_sample": True, "temperature": temperature} if temperature > 0 else {"do_sample": False})
        with torch.no_grad(), self._adapters_for([name for _, name in named], kwargs):
            self.model.generate(**enc, **kwargs)
        rows.finish()

    def _adapters_for(self, names: list[str], kwargs: dict):
        """Select the batch's adapters: one for all rows is peft's fast path; a mix goes row by row."""
        import contextlib

        from peft import PeftModel

        if not isinstance(self.model, PeftModel):
            return contextlib.nullcontext()
        if len(set(names)) > 1:
            kwargs["adapter_names"] = names
            return contextlib.nullcontext()
        if names[0] == BASE:
            return self.model.disable_adapter()
        self.model.set_adapter(names[0])
        return contextlib.nullcontext()


def _stop_ids(tok, model) -> set[int]:
    ids = model.generation_config.eos_token_id
    ids = set(ids if isinstance(ids, list) else [ids] if ids is not None else [])
    return ids | {tok.eos_token_id}


class _Rows:
    """A transformers streamer for a whole batch: hands each row's new text to its request."""

    def __init__(self, tok, batch: list[Request], stop: set[int], prompt_tokens: list[int]):
        self.tok, self.batch, self.stop, self.prompt_tokens = tok, batch, stop, prompt_tokens
        self.ids: list[list[int]] = [[] for _ in batch]
        self.sent = [0] * len(batch)  # characters already handed out
        self.done: list[str | None] = [None] * len(batch)  # finish reason once a row is over
        self.prompt_seen = False

    def put(self, value) -> None:
        if not self.prompt_seen:  # generate() first hands over the prompts themselves
            self.prompt_seen = True
            return
        for i, token in enumerate(value.reshape(-1).tolist()):
            if self.done[i]:
                continue
            if token in self.stop:
                self.done[i] = "stop"
                continue
            self.ids[i].append(token)
            self._flush(i)
            if len(self.ids[i]) >= self.batch[i].max_tokens:
                self.done[i] = "length"

    def end(self) -> None:
        pass

    def _flush(self, i: int, final: bool = False) -> None:
        text = self.tok.decode(self.ids[i], skip_special_tokens=True)
        if text.endswith("\ufffd") and not final:
            return  # half a character: wait for the token that completes it
        if len(text) > self.sent[i]:
            self.batch[i].out.put(text[self.sent[i]:])
            self.sent[i] = len(text)

    def finish(self) -> None:
        """Each request's last piece and its Reply (whole text, token counts, finish reason)."""
        for i, req in enumerate(self.batch):
            self._flush(i, final=True)
            text = self.tok.decode(self.ids[i], skip_special_tokens=True)
            req.out.put(Reply(text, self.prompt_tokens[i], len(self.ids[i]), self.done[i] or "length"))
