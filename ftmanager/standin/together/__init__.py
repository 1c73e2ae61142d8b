"""A stand-in for Together AI's fine-tuning API, on the shared front, with jobs on a clock.

    from ftmanager.standin.together import standin
    with standin(speed=20, adapter=adapter_dir) as srv:    # TOGETHER_BASE_URL=srv.base_url
        ...

Driven by the official `together` SDK unchanged (its base URL has no /v1: the SDK's paths
carry it). Faults as on the OpenAI stand-in (`--fault "drop_after POST /fine-tunes"`), errors
in Together's shape (the same {"error": {message, type, param, code}} as OpenAI's). A completed
job's download is a real .tar.zst of the adapter (or merged model) folder a test hands it.
"""

from __future__ import annotations

import tarfile
import threading
from pathlib import Path

from ...front.state import ApiError
from ..standin_server import StandinServer
from .clock import TogetherClock
from .routes import ROUTES

__all__ = ["TogetherServer", "standin"]


class TogetherServer(StandinServer):
    """The front with Together's routes, its signed upload URLs and its weights to download."""

    def __init__(self, service: TogetherClock, host: str, port: int, *, weights: dict, **options):
        super().__init__(service, host, port, routes=ROUTES, prefix="/v1", **options)
        self.files: dict[str, dict] = {}  # Together's file records (the SDK's upload flow)
        self.weights = {kind: Path(p) for kind, p in weights.items() if p is not None}
        self._archives: dict[str, Path] = {}
        self._packing = threading.Lock()

    @property
    def base_url(self) -> str:
        """What TOGETHER_BASE_URL should be: the SDK adds /v1 itself."""
        return self.url[: -len(self.prefix)]

    def authorize(self, headers: dict, path: str) -> None:
        if path.startswith("/files/") and path.endswith("/put"):
            return  # a signed URL: its route checks the signature, as a bucket would
        super().authorize(headers, path)

    def body_limit(self, path: str, content_type: str) -> int:
        return self.max_file_bytes if path.endswith("/put") else super().body_limit(path, content_type)

    def archive(self, kind: str) -> Path:
        """The .tar.zst of the weights of this kind (a folder is packed once; an archive is served as is)."""
        source = self.weights.get(kind)
        if source is None:
            flag = "--adapter" if kind == "adapter" else "--merged"
            raise ApiError(404, f"This stand-in was started without {kind} weights ({flag} DIR): "
                           "it has nothing to download.", param="checkpoint", code="not_found")
        if source.is_file():
            return source
        with self._packing:
            if kind not in self._archives:
                self._archives[kind] = pack(source, self.state.data_dir / f"{kind}.tar.zst")
        return self._archives[kind]


def pack(folder: Path, out: Path) -> Path:
    """folder as a zstd-compressed tar (written under a temporary name, then renamed)."""
    import zstandard

    tmp = out.with_name(out.name + ".tmp")
    with open(tmp, "wb") as raw, zstandard.ZstdCompressor(level=3).stream_writer(raw, closefd=False) as zst, \
            tarfile.open(fileobj=zst, mode="w|") as tar:
        tar.add(folder, arcname=folder.name)
    tmp.replace(out)
    return out


def standin(host: str = "127.0.0.1", port: int = 0, speed: float = 1.0, *, adapter: Path | None = None,
            merged: Path | None = None, **options) -> TogetherServer:
    """A stand-in Together server (not started: use it as a context manager, or call start())."""
    options.pop("results_base64", None)  # an OpenAI stand-in's knob
    return TogetherServer(TogetherClock(speed=speed), host, port, weights={"adapter": adapter, "merged": merged},
                          **options)

