"""A fake inference engine for ftm's tests, registered through the `ftm.engines` entry-point
group exactly as a third-party package would be (this folder is put on sys.path).

It answers each ask with the last user message's words, one Piece each, then a Done; a prompt
longer than CONTEXT characters is refused with the contract's PromptTooLong, and a target named
"broken" fails to load, as a real engine's missing weights would.
"""

from __future__ import annotations

from pathlib import Path

from ftmanager.asks import Ask, Done, Piece
from ftmanager.engine import Engine, PromptTooLong
from ftmanager.errors import BackendError, InvalidInput

CONTEXT = 40


class EchoPool:
    def __init__(self):
        self.closed = False

    def stream(self, ask: Ask):
        if ask.target == "broken":
            raise BackendError("cannot load /secret/weights/broken", "Check the files.")
        words = ask.messages[-1]["content"].split()
        if len(ask.messages[-1]["content"]) > CONTEXT:
            raise PromptTooLong(f"the prompt is {len(words)} words and the context is {CONTEXT} characters",
                                "Shorten the conversation.")
        for word in words:
            yield Piece(word + " ")
        yield Done(" ".join(words) + " ", len(words), len(words), "stop")

    def answers(self, asks: list[Ask]) -> list[Done]:
        return [list(self.stream(ask))[-1] for ask in asks]

    def loaded(self) -> dict[str, list[str]]:
        return {}

    def close(self) -> None:
        self.closed = True


class EchoEngine(Engine):
    name = "echo"

    def pool(self, device: str = "auto", max_batch: int = 8) -> EchoPool:
        return EchoPool()

    def shared(self) -> EchoPool:
        return EchoPool()

    def target(self, result_path, base_model):
        return result_path or base_model

    def check_device(self, device: str) -> str:
        if device != "cpu":
            raise InvalidInput(f"no device called {device!r}", "Use cpu.")
        return device

    def ships(self, base_model: str) -> bool:
        return base_model == "echo"

    def merge(self, adapter: str, base_model: str, out_dir: str) -> Path:
        raise InvalidInput("the echo engine has no weights to merge", "Use the local engine.")

    def answer_logprobs(self, result_path, base_model, conversations):
        return [(0.0, len(c[-1]["content"].split())) for c in conversations]
