"""The local inference engine: one model pool (pool.py) that loads a base, attaches LoRA adapters
per request (lora.py) and decodes with continuous batching (decoding.py, rows.py); scoring.py
gives log-probabilities and merging.py a base with its adapter merged in.

Registered in the `ftm.engines` entry-point group; core reaches it through ftmanager.engine only.
Nothing heavy is imported here: torch loads in the pool's thread, in scoring and in merging.
"""

from __future__ import annotations

from pathlib import Path

from ftmanager.engine import Engine

from ..modeling import loading


class LocalEngine(Engine):
    name = "local"

    def pool(self, device: str = "auto", max_batch: int = 8):
        from .pool import Pool

        return Pool(device=device, max_batch=max_batch)

    def shared(self):
        from .pool import shared

        return shared()

    def target(self, result_path: str | None, base_model: str | None) -> loading.Target:
        return loading.target(result_path, base_model)

    def check_device(self, device: str) -> str:
        return loading.checked_device(device)

    def ships(self, base_model: str) -> bool:
        return base_model in loading.SMOLLM2_ALIASES

    def merge(self, adapter: str, base_model: str, out_dir: str) -> Path:
        from .merging import export

        return export(adapter, base_model, out_dir, merge=True)

    def answer_logprobs(self, result_path: str | None, base_model: str | None,
                        conversations: list[list[dict]]) -> list[tuple[float, int]]:
        from .scoring import answer_logprobs

        return answer_logprobs(result_path, base_model, conversations)
