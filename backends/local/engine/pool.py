"""One model pool for `ftm generate`, `ftm chat`, `ftm eval` and `ftm serve`.

One base model in memory per base directory, many LoRA adapters on it, each request with its
own (lora.py). One thread per base decodes with continuous batching at the token level: a
request joins the running batch at the next step and a finished one leaves it at once
(decoding.py), so a long answer never holds a short one back. A long prompt is read in chunks
between steps, so it does not stall the rows already running either.

transformers' own continuous batching (`generate_batch`) flattens every request into one row
of a paged cache, where peft's and our per-row adapters have no row to work on; hence this
padded-cache design on the same idea. Heavy imports happen in the pool's thread only.

    for item in shared().stream(Ask(target, messages, max_tokens=64)):
        print(item.text if isinstance(item, Piece) else item.finish_reason)
"""

from __future__ import annotations

import atexit
import os
import threading
import weakref
from collections import Counter, deque
from collections.abc import Iterator
from pathlib import Path

from ftmanager.asks import Ask, Done, Piece
from ftmanager.errors import InvalidInput, NotFound

from .rows import Row, check

__all__ = ["Ask", "Done", "Piece", "Pool", "shared"]

PREFILL_TOKENS = 256  # prompt tokens read per step of the running batch: its pause for newcomers


class Pool:
    """Base models in memory, each with its adapters and the thread that decodes for them."""

    def __init__(self, device: str = "auto", max_batch: int = 8, prefill_tokens: int = PREFILL_TOKENS):
        # OpenMP threads that sleep between operations (OMP_WAIT_POLICY=PASSIVE) make a decoding
        # step 1.5x slower on an idle machine (SmolLM2, 8 rows, CPU: 90 ms against 61); threads that
        # spin without bound made it 10x slower on a crowded one (bitsandbytes, which peft imports,
        # brings a second OpenMP runtime). A bounded spin was as fast as spinning when idle. Read
        # when torch loads, so set before (an explicit OMP_WAIT_POLICY still wins).
        os.environ.setdefault("GOMP_SPINCOUNT", "20000")
        self.device, self.max_batch, self.prefill_tokens = device, max_batch, prefill_tokens
        self._engines: dict[str, _Engine] = {}
        self._lock = threading.Lock()
        # A decoding thread still alive when the interpreter shuts down can abort the process
        # ("terminate called without an active exception", seen after `ftm generate`).
        atexit.register(_close_at_exit, weakref.ref(self))

    def stream(self, ask: Ask) -> Iterator[Piece | Done]:
        """Pieces of the answer as they are made, then its Done. A request the model cannot take
        (a prompt longer than its context, a broken adapter) raises FtmError before any piece;
        closing the iterator early stops that row at the next step."""
        yield from _pieces(self._submit(ask))

    def answers(self, asks: list[Ask]) -> list[Done]:
        """Every answer, the requests decoded together (what `ftm eval` and `ftm generate` use)."""
        rows = [self._submit(ask) for ask in asks]
        try:
            return [_last(_pieces(row)) for row in rows]
        finally:
            for row in rows:
                row.gone = True

    def loaded(self) -> dict[str, list[str]]:
        """Base directory -> the adapter directories loaded on it (what is in memory)."""
        with self._lock:
            return {base: list(e.adapters.slots) if e.adapters else [] for base, e in self._engines.items()
                    if e.model is not None}

    def stats(self) -> dict:
        """How often models were loaded and adapters merged in, and how many rows each decoding step carried."""
        with self._lock:
            engines = list(self._engines.values())
        return {"base_loads": sum(e.loads for e in engines),
                "adapter_loads": sum(len(e.adapters.slots) for e in engines if e.adapters),
                "merges": sum(e.adapters.merges for e in engines if e.adapters),
                "step_sizes": sum((Counter(dict.copy(e.step_sizes)) for e in engines), Counter())}

    def close(self) -> None:
        """Stop every thread; requests still waiting end with an error."""
        with self._lock:
            engines, self._engines = list(self._engines.values()), {}
        for engine in engines:
            engine.inbox.put(None)
        for engine in engines:
            engine.thread.join(timeout=30)

    def _submit(self, ask: Ask) -> Row:
        check(ask)
        row = Row(ask)
        self._engine(ask.target.base).inbox.put(row)
        return row

    def _engine(self, base: str) -> _Engine:
        key = str(Path(base).resolve()) if Path(base).exists() else base
        with self._lock:
            if key not in self._engines:
                self._engines[key] = _Engine(key, self.device, self.max_batch, self.prefill_tokens)
            return self._engines[key]


def _close_at_exit(pool: weakref.ref) -> None:
    if pool() is not None:
        pool().close()


def _pieces(row: Row) -> Iterator[Piece | Done]:
    """What the engine sends a row, until its Done; leaving early marks the row gone."""
    try:
        while True:
            item = row.out.get()
            if isinstance(item, BaseException):
                raise item
            yield item
            if isinstance(item, Done):
                return
    finally:
        row.gone = True


def _last(items: Iterator) -> Done:
    for item in items:
        pass
    return item


_shared: Pool | None = None
_shared_lock = threading.Lock()


def shared() -> Pool:
    """This process's pool (models stay loaded across calls: `ftm chat` reads each line with it)."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = Pool()
        return _shared


class _Engine:
    """One base model, its adapters, and the thread that decodes every request for them."""

    def __init__(self, base: str, device: str, max_batch: int, prefill_tokens: int):
        import queue

        self.base, self.device, self.max_batch, self.prefill_tokens = base, device, max_batch, prefill_tokens
        self.inbox: queue.Queue = queue.Queue()
        self.waiting: deque[Row] = deque()  # submitted, not started
        self.feeding: list[Row] = []  # prompts being read into a cache
        self.model = self.tok = self.adapters = self.batch = None
        self.loads, self.step_sizes = 0, Counter()
        self.thread = threading.Thread(target=self._run, daemon=True, name=f"ftm-pool-{Path(base).name}")
        self.thread.start()

    def _run(self) -> None:
        import torch

        while self._gather():
            try:
                self._load()
                with torch.inference_mode():
                    self._start_rows()
                    self._feed()
                    self._step()
            except Exception as err:  # noqa: BLE001 - every waiting client must hear of it
                self._fail_all(err)
        self._fail_all(RuntimeError("the model pool is closed"))

    def _gather(self) -> bool:
        """Take new requests into the waiting line, blocking while there is nothing to do; False: closed."""
        import queue

        block = not (self.waiting or self.feeding or (self.batch and self.batch.rows))
        while True:
            try:
                row = self.inbox.get(block=block)
            except queue.Empty:
                return True
            if row is None:
                return False
            self.waiting.append(row)
            block = False

    def _load(self) -> None:
        if self.model is not None:
            return
        from ..modeling import loading as models
        from . import decoding, merging
        from .lora import Adapters

        if Path(self.base).is_absolute() and not Path(self.base).exists():
            raise NotFound(f"no model at {self.base}", "Check the run's base model.")
        merging._quiet()
        device = models.pick_device(self.device)
        self.tok = models.load_tokenizer(self.base)
        model = models.load_base(self.base, device, quantize=False).eval()
        self.stops = _stop_ids(self.tok, model)
        self.context = _context(model, self.tok)
        self.cache_arg = decoding.cache_arg(model)
        if not decoding.batchable(model):
            self.max_batch = 1  # sliding-window or linear-attention caches: one row at a time
        self.adapters, self.batch = Adapters(model, self.base), decoding.Batch(model, self.cache_arg)
        self.model, self.loads = model, self.loads + 1

    def _start_rows(self) -> None:
        """Move waiting requests into prompt reading, up to max_batch rows at a time."""
        while self.waiting and len(self.feeding) + len(self.batch.rows) < self.max_batch:
            row = self.waiting.popleft()
            if row.gone:
                continue
            try:
                row.start(self._prompt(row.ask), self.context, self._slot(row.ask.target.adapter))
            except Exception as err:  # noqa: BLE001 - one bad request must not fail its neighbours
                row.fail(err)
            else:
                self.adapters.admit(row.slot)
                self.feeding.append(row)

    def _prompt(self, ask: Ask) -> list[int]:
        from jinja2 import TemplateError

        from ..modeling.encoding import prompt_text

        try:
            text = prompt_text(self.tok, ask.messages, ask.target.template)
        except TemplateError as err:
            raise InvalidInput(f"the model's chat template refused these messages ({err})",
                               "Check the roles and contents of the messages.") from None
        return self.tok(text, add_special_tokens=False)["input_ids"]

    def _slot(self, adapter: str | None) -> int:
        if adapter is None:
            return 0
        if not (Path(adapter) / "adapter_config.json").exists():
            raise NotFound(f"no LoRA adapter at {adapter}", "Check the run's result path.")
        return self.adapters.slot(adapter)

    def _feed(self) -> None:
        """Read prompts into the cache, about prefill_tokens of them per step, then join the batch."""
        from .decoding import Fed

        self.feeding = [row for row in self.feeding if not row.gone]
        if not self.feeding:
            return
        first = self.feeding[0]
        running = [row.slot for row in self.batch.rows]
        if first.fed or len(first.prompt) > self.prefill_tokens:
            self.adapters.select([first.slot], running)
            fed = Fed.alone(self.model, self.cache_arg, first, self.prefill_tokens)
            group = [first] if fed else []
        else:
            group, budget = [], self.prefill_tokens
            for row in self.feeding:
                if row.fed or len(row.prompt) > budget:
                    break
                group.append(row)
                budget -= len(row.prompt)
            self.adapters.select([row.slot for row in group], running)
            fed = Fed(self.model, self.cache_arg, [row.prompt for row in group], self.tok.pad_token_id)
        if group:
            self.feeding = [row for row in self.feeding if row not in group]
            self._join(group, fed)

    def _join(self, rows: list[Row], fed) -> None:
        """Choose each new row's first token, then let the rows that go on join the batch."""
        import torch

        tokens = self._take(rows, fed.logits)
        fed.next = torch.tensor(tokens, device=fed.mask.device)
        self.batch.join(rows, fed)
        self.batch.leave({row for row in rows if row.over})

    def _step(self) -> None:
        """One token for every running row; finished and abandoned rows leave at once."""
        import torch

        self.batch.leave({row for row in self.batch.rows if row.gone})
        if not self.batch.rows:
            return
        self.step_sizes[len(self.batch.rows)] += 1
        self.adapters.select([row.slot for row in self.batch.rows], [row.slot for row in self.feeding])
        tokens = self._take(self.batch.rows, self.batch.step())
        self.batch.next = torch.tensor(tokens, device=self.batch.next.device)
        self.batch.leave({row for row in self.batch.rows if row.over})

    def _take(self, rows: list[Row], logits) -> list[int]:
        """Choose a token for each row and hand it to the row (which sends its text)."""
        from .decoding import choose, logprobs

        tokens = choose(logits, rows)
        for i, (row, token) in enumerate(zip(rows, tokens)):
            entry = logprobs(self.tok, logits[i], token, row.ask.top_logprobs) if row.ask.logprobs else None
            row.over = row.take(self.tok, token, self.stops, entry)
        return tokens

    def _fail_all(self, err: BaseException) -> None:
        rows = list(self.waiting) + self.feeding + (self.batch.rows if self.batch else [])
        for row in rows:
            row.fail(err)
        self.waiting.clear()
        self.feeding = []
        if self.batch:
            self.batch.leave(set(rows))


def _stop_ids(tok, model) -> set[int]:
    """Tokens that end an answer: the generation config's end-of-sequence ids and the tokenizer's."""
    ids = model.generation_config.eos_token_id
    ids = set(ids if isinstance(ids, list) else [ids] if ids is not None else [])
    return ids | ({tok.eos_token_id} if tok.eos_token_id is not None else set())


def _context(model, tok) -> int:
    """The longest sequence the model takes: its position embeddings, else the tokenizer's limit."""
    n = getattr(model.config.get_text_config(), "max_position_embeddings", None)
    return int(n or min(tok.model_max_length, 1 << 20))
