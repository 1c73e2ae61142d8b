"""The Row between an Ask and its answer (ftmanager.asks: Ask in, Pieces of text and a Done out).

A Row turns the tokens the pool chooses for it into text as it is made: incremental
detokenization (a character split across tokens waits for its last byte), stop sequences (text
that may begin one is held back until it cannot), the token limit, and OpenAI-shaped logprobs
attached to the piece that carries each token's text. Nothing heavy is imported here.
"""

from __future__ import annotations

import queue
import random

from ftmanager.asks import Ask, Done, Piece
from ftmanager.engine import PromptTooLong
from ftmanager.errors import InvalidInput


def check(ask: Ask) -> None:
    """Refuse sampling settings no model can honour, before anything is queued."""
    if ask.max_tokens is not None and ask.max_tokens < 1:
        raise InvalidInput(f"max_tokens is {ask.max_tokens}", "Ask for at least 1 token, or leave it unset.")
    if ask.temperature < 0 or not 0 < ask.top_p <= 1:
        raise InvalidInput(f"temperature {ask.temperature} / top_p {ask.top_p} is out of range",
                           "Use a temperature >= 0 and 0 < top_p <= 1.")
    if not 0 <= ask.top_logprobs <= 20:
        raise InvalidInput(f"top_logprobs is {ask.top_logprobs}", "Ask for 0 to 20.")


class Row:
    """One request being answered: its prompt, adapter, limits, and the queue its pieces go to."""

    def __init__(self, ask: Ask):
        self.ask, self.out = ask, queue.Queue()
        self.gone = False  # the consumer closed its iterator: stop at the next step
        self.over = False  # its Done has been sent
        self.prompt: list[int] = []
        self.slot, self.limit = 0, 0  # adapter slot; most tokens to make
        self.cache, self.fed = None, 0  # a long prompt's own cache while it is read in chunks
        self.generator = None  # torch.Generator for sampling, seeded
        self.ids: list[int] = []  # tokens made (the stop token excluded)
        self.sent = ""  # text handed out
        self._held = ""  # text made but held back: it may begin a stop sequence
        self._entries: list[tuple[int, int, dict]] = []  # (start, end, logprobs) of tokens not yet sent
        self._offsets = (0, 0)  # incremental detokenization: (prefix, read) positions in ids

    def start(self, prompt: list[int], context: int, slot: int) -> None:
        """Check the prompt fits the model's context and set the token limit."""
        import torch

        if len(prompt) >= context:
            raise PromptTooLong(f"the prompt is {len(prompt)} tokens and the model's context is {context}",
                                "Shorten the conversation.")
        self.prompt, self.slot = prompt, slot
        self.limit = min(self.ask.max_tokens or context, context - len(prompt))
        seed = self.ask.seed if self.ask.seed is not None else random.getrandbits(63)
        self.generator = torch.Generator().manual_seed(seed)

    def take(self, tok, token: int, stops: set[int], entry: dict | None) -> bool:
        """Add one chosen token; True when the answer is over (its Done has been sent)."""
        if token in stops:
            return self.finish(tok, "stop")
        self.ids.append(token)
        new = self._decode(tok)
        made = len(self.sent) + len(self._held)
        if entry is not None:
            self._entries.append((made, made + len(new), entry))
        if self._emit(self._held + new):
            return True
        if len(self.ids) >= self.limit:
            return self.finish(tok, "length")
        return False

    def finish(self, tok, reason: str) -> bool:
        """Hand out what is held and the Done."""
        prefix, _read = self._offsets
        tail = tok.decode(self.ids[prefix:], skip_special_tokens=True)[len(self._decoded_prefix(tok)):]
        self._send(self._held + tail, final=True)
        self.out.put(Done(self.sent, len(self.prompt), len(self.ids), reason))
        return True

    def fail(self, err: BaseException) -> None:
        self.out.put(err)

    def _emit(self, text: str) -> bool:
        """Send what cannot begin a stop sequence; on a stop sequence, send what precedes it and end."""
        cuts = [i for i in (text.find(s) for s in self.ask.stop) if i >= 0]
        if cuts:
            self._send(text[: min(cuts)], final=True)
            self.out.put(Done(self.sent, len(self.prompt), len(self.ids), "stop"))
            return True
        keep = max((k for s in self.ask.stop for k in range(1, min(len(s), len(text)) + 1)
                    if text.endswith(s[:k])), default=0)
        self._send(text[: len(text) - keep])
        self._held = text[len(text) - keep:]
        return False

    def _send(self, text: str, final: bool = False) -> None:
        """One Piece: the text and the logprobs of the tokens it completes (all of them when final)."""
        end = len(self.sent) + len(text)
        ready = [e for e in self._entries if (e[0] < end if final else e[1] <= end)]
        self._entries = [] if final else [e for e in self._entries if e[1] > end]
        self._held = ""
        if text or ready:
            self.sent += text
            self.out.put(Piece(text, [e for _, _, e in ready] if self.ask.logprobs else None))

    def _decode(self, tok) -> str:
        """The text the newest token completes (TGI's prefix/read offsets: O(1) tokens decoded per step)."""
        prefix, read = self._offsets
        before = self._decoded_prefix(tok)
        now = tok.decode(self.ids[prefix:], skip_special_tokens=True)
        if len(now) > len(before) and not now.endswith("\ufffd"):
            self._offsets = (read, len(self.ids))
            return now[len(before):]
        return ""

    def _decoded_prefix(self, tok) -> str:
        prefix, read = self._offsets
        return tok.decode(self.ids[prefix:read], skip_special_tokens=True)
