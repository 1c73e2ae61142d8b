"""`ftm serve`: OpenAI's fine-tuning and chat API on this machine, with real local training.

    from ftmanager.serve import serve
    with serve(port=0, api_key="KEY") as server:   # a real server on 127.0.0.1
        client = openai.OpenAI(base_url=server.url, api_key="KEY")

The HTTP front is the generic one with OpenAI's routes (ftmanager.front.openai) and no hooks;
LocalService runs each job as an ftm run of the local backend, keeps the API's files and jobs
in the ledger (so a restart forgets nothing), and answers chat with every model the ledger
has weights for (models.py). Base-model names map to local models in served_models.toml.
"""

from __future__ import annotations

from pathlib import Path

from ..front.openai import ROUTES
from ..front.server import Server
from .local_service import LocalService, fine_tuned_name

__all__ = ["LocalService", "fine_tuned_name", "serve"]

MAX_FILE_BYTES = 512 << 20  # OpenAI's limit for POST /files
MAX_PART_BYTES = 64 << 20  # and for each part of an upload


def serve(host: str = "127.0.0.1", port: int = 8000, *, api_key: str | None = None,
          max_file_bytes: int = MAX_FILE_BYTES, max_part_bytes: int = MAX_PART_BYTES,
          device: str = "auto", max_batch: int = 8, data_dir: Path | None = None, pool=None) -> Server:
    """An OpenAI-compatible server backed by local training (not started: `with` it, or start())."""
    from .. import paths
    from .ledger_state import LedgerState

    service = LocalService(pool, make_pool=lambda: _pool(device, max_batch))
    try:
        state = LedgerState(Path(data_dir) if data_dir else paths.home() / "serve")
        return Server(service, host, port, api_key=api_key, state=state, routes=ROUTES,
                      max_file_bytes=max_file_bytes, max_part_bytes=max_part_bytes,
                      pages=_dashboard(host, api_key))
    except BaseException:
        service.close()
        raise


def _dashboard(host: str, api_key: str | None):
    """`ftm ui`'s pages at / beside the API: a server with a key asks for it once (a login), even
    on loopback, since the pages can cancel runs and chat; off loopback only a loopback-free Host."""
    from ..ui.app import make_app
    from ..ui.server import is_loopback

    return make_app(key=api_key, loopback_only=is_loopback(host))


def _pool(device: str, max_batch: int):
    """A pool of this server's own (tests start several; the CLI starts one)."""
    from .. import engine

    return engine.get().pool(device=device, max_batch=max_batch)
