"""`ftm serve`: OpenAI's fine-tuning and chat API on this machine, with real local training.

    from ftmanager.serve import serve
    with serve(port=0, api_key="KEY") as server:   # a real server on 127.0.0.1
        client = openai.OpenAI(base_url=server.url, api_key="KEY")

The HTTP front is the stand-in's (ftmanager.api.Server); LocalRunner runs each job as an ftm
run of the local backend, and a ModelPool answers chat with one base model per name and the
runs' LoRA adapters on it. Base-model names map to local models in served_models.toml.
"""

from __future__ import annotations

from pathlib import Path

from ..api import Server
from .pool import ModelPool
from .runner import LocalRunner, fine_tuned_name, run_of

__all__ = ["LocalRunner", "ModelPool", "fine_tuned_name", "run_of", "serve"]

MAX_FILE_BYTES = 512 << 20  # OpenAI's limit for POST /files
MAX_PART_BYTES = 64 << 20  # and for each part of an upload


def serve(host: str = "127.0.0.1", port: int = 8000, *, api_key: str | None = None,
          max_file_bytes: int = MAX_FILE_BYTES, max_part_bytes: int = MAX_PART_BYTES,
          device: str = "auto", max_batch: int = 8, batch_window: float = 0.0,
          data_dir: Path | None = None) -> Server:
    """An OpenAI-compatible server backed by local training (not started: `with` it, or start())."""
    runner = LocalRunner(ModelPool(device=device, max_batch=max_batch, batch_window=batch_window))
    try:
        return Server(runner, host, port, api_key=api_key, data_dir=data_dir,
                      max_file_bytes=max_file_bytes, max_part_bytes=max_part_bytes)
    except BaseException:
        runner.close()
        raise
