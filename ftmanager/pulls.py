"""Weights brought home from a hosted provider (`ftm pull`), and how a pulled run is used.

A backend's download() streams the provider's archive to disk and calls unpack(); jobs.pull
builds it under a temporary name and renames it into the run's folder. From then on the run
answers like a local run's adapter (generate, chat, eval, export, serve) on the local model
the base-model table maps its base to. Light at import: tarfile and zstandard load on use.
"""

from __future__ import annotations

import json
from pathlib import Path

from . import basemodels
from .errors import BackendError, InvalidInput

ADAPTER_CONFIG, MODEL_CONFIG = "adapter_config.json", "config.json"
ZSTD_MAGIC, GZIP_MAGIC = b"\x28\xb5\x2f\xfd", b"\x1f\x8b"
# An archive unpacks to at most this many times its own size (weights barely compress), and
# never less than FLOOR_BYTES; `ftm pull --max-size` replaces both, the free disk caps all.
EXPANSION, FLOOR_BYTES = 10, 256 << 20
WEIGHTS = (".safetensors", ".bin")
SAFETENSORS_HEADER_MAX = 100 << 20  # the format's own limit on its JSON header


def fetch(impl, run: dict, run_dir: Path, merged: bool) -> Path:
    """The folder holding what run trained, downloaded into run_dir/adapter (or /merged) unless
    it is there already; a killed download leaves only a temporary folder the next one clears."""
    from .tempfiles import built_in_place

    if not gives_weights(type(impl)):
        impl.download(run["provider_job_id"], run["result_model"], run_dir, merged)  # its Unsupported
    out = run_dir / ("merged" if merged else "adapter")
    if out.is_dir() and any(out.iterdir()):
        return model_dir(out, impl.name)
    return built_in_place(out, lambda tmp: checked(
        impl.download(run["provider_job_id"], run["result_model"], tmp, merged), impl.name))


def unpack(archive: Path, out_dir: Path, provider: str) -> Path:
    """Extract a .tar.zst, .tar.gz or plain .tar into out_dir as a stream (never whole in memory,
    no member outside out_dir, no links or devices, no more bytes than the cap); returns the
    folder holding the model."""
    import tarfile

    from .downloads import TooBig

    out_dir.mkdir(parents=True, exist_ok=True)
    cap = _unpack_cap(archive)
    with open(archive, "rb") as raw:
        magic = raw.read(4)
        raw.seek(0)
        stream = _decompressed(raw, magic)
        try:
            with tarfile.open(fileobj=stream, mode="r|gz" if magic[:2] == GZIP_MAGIC else "r|") as tar:
                tar.extractall(out_dir, members=_within(tar, cap, out_dir, provider), filter="data")
        except TooBig:
            raise
        except (tarfile.TarError, OSError, EOFError, ValueError, _zstd_error()) as err:
            raise BackendError(f"the archive {provider} sent is not a readable tar archive ({str(err)[:120]})",
                               "Run `ftm pull` again; nothing was kept.") from None
        finally:
            stream.close()
    return model_dir(out_dir, provider)


def _unpack_cap(archive: Path) -> tuple[int, str]:
    """(bytes the archive may unpack to, where that number comes from)."""
    from .downloads import limit

    given = limit()
    if given is not None:
        return given, "--max-size"
    return max(EXPANSION * archive.stat().st_size, FLOOR_BYTES), f"{EXPANSION} times the archive's size"


def _within(tar, cap: tuple[int, str], out_dir: Path, provider: str):
    """tar's members, stopped before the one whose declared size passes the cap or the free disk
    (tarfile writes exactly what a member declares)."""
    from .downloads import TooBig, room

    total, (most, source) = 0, cap
    for member in tar:
        total += max(member.size, 0)
        if total > most:
            raise TooBig(f"the archive {provider} sent unpacks to over {most} bytes ({source})",
                         "Nothing was kept; pass a larger --max-size if you expect it.")
        if member.size > room(out_dir):
            raise TooBig(f"the archive {provider} sent does not fit on the disk ({total} bytes so far)",
                         "Nothing was kept; free some space and run `ftm pull` again.")
        yield member


def _zstd_error():
    try:
        from zstandard import ZstdError
    except ImportError:
        return OSError
    return ZstdError


def _decompressed(raw, magic: bytes):
    if magic != ZSTD_MAGIC:
        return raw
    import zstandard

    return zstandard.ZstdDecompressor().stream_reader(raw, read_size=1 << 20)


def model_dir(folder: Path, provider: str) -> Path:
    """The folder (or the one sub-folder, two levels deep at most) holding a peft adapter or a
    whole Hugging Face model."""
    for depth in range(3):
        for config in (ADAPTER_CONFIG, MODEL_CONFIG):
            found = sorted(Path(folder).glob("/".join(["*"] * depth + [config])))
            if found:
                return found[0].parent
    raise BackendError(f"what {provider} sent holds no model (no {ADAPTER_CONFIG} or {MODEL_CONFIG})",
                       "Check the run's status with `ftm show`, then run `ftm pull` again.")


def checked(folder: Path, provider: str) -> Path:
    """The folder holding the model in folder, once its files have the shape of a peft adapter
    (or a Hugging Face model): a JSON-object config beside weights whose headers read."""
    where = model_dir(folder, provider)
    config = ADAPTER_CONFIG if (where / ADAPTER_CONFIG).is_file() else MODEL_CONFIG
    _json_object(where / config, provider)
    weights = sorted(p for p in where.iterdir() if p.suffix in WEIGHTS and p.is_file())
    if not weights:
        raise BackendError(f"what {provider} sent has {config} but no weights (*.safetensors or *.bin)",
                           "Nothing was kept; check the run with `ftm show`, then run `ftm pull` again.")
    for path in weights:
        if path.suffix == ".safetensors":
            _safetensors_header(path, provider)
    return where


def _json_object(path: Path, provider: str) -> dict:
    try:
        value = json.loads(path.read_bytes())
    except (ValueError, RecursionError):
        value = None
    if not isinstance(value, dict):
        raise BackendError(f"the {path.name} {provider} sent is not a JSON object",
                           "Nothing was kept; check the run with `ftm show`, then run `ftm pull` again.")
    return value


def _safetensors_header(path: Path, provider: str) -> None:
    """Refuse a .safetensors file whose header (8-byte length, then a JSON object) does not read."""
    with open(path, "rb") as f:
        head = f.read(8)
        length = int.from_bytes(head, "little") if len(head) == 8 else -1
        fits = 0 < length <= min(SAFETENSORS_HEADER_MAX, path.stat().st_size - 8)
        try:
            header = json.loads(f.read(length)) if fits else None
        except (ValueError, RecursionError):
            header = None
    if not isinstance(header, dict):
        raise BackendError(f"{path.name} from {provider} is not a readable safetensors file",
                           "Nothing was kept; run `ftm pull` again.")


def size(folder: Path) -> int:
    """Bytes of every file under folder."""
    return sum(f.stat().st_size for f in Path(folder).rglob("*") if f.is_file())


# --- using a pulled run ------------------------------------------------------------------------


def gives_weights(backend_cls) -> bool:
    """Whether a backend downloads what it trained (overrides Backend.download)."""
    from .backend import Backend

    return backend_cls.download is not Backend.download


def is_pulled(backend_name: str, result_path: str | None) -> bool:
    """Whether these are weights a hosted backend's download brought home."""
    from . import registry

    return bool(result_path) and gives_weights(registry.load(backend_name))


def answering(run: dict) -> tuple:
    """(the backend that answers with run's model, the run as that backend sees it): a run whose
    weights were pulled answers here, through the local backend, on its mapped local base."""
    from . import registry

    if not is_pulled(run["backend"], run.get("result_path")):
        return registry.get(run["backend"]), run
    path, base = local_view(run["backend"], run["result_path"], run["base_model"])
    return registry.get("local"), {**run, "result_path": path, "base_model": base}


def local_view(backend_name: str, result_path: str | None, base_model: str) -> tuple[str | None, str]:
    """(result_path, base_model) as the local backend uses them: a pulled adapter on the local
    model the table maps its base to, a pulled whole model as a base of its own. Others unchanged."""
    if not is_pulled(backend_name, result_path):
        return result_path, base_model
    folder = Path(result_path)
    if not (folder / ADAPTER_CONFIG).is_file():
        return None, str(folder)
    named = json.loads((folder / ADAPTER_CONFIG).read_text()).get("base_model_name_or_path")
    local = basemodels.local_for(base_model, named if isinstance(named, str) else "")
    return result_path, available(local, base_model)


def merge(adapter: Path, base: str, out_dir: Path) -> Path:
    """A pulled adapter merged into its base by the engine, written to out_dir: the base the
    adapter names where it is on this machine, else the base-model table's local model for it."""
    from . import engine

    named = json.loads((adapter / ADAPTER_CONFIG).read_text()).get("base_model_name_or_path") or ""
    local = named if Path(named).is_dir() else available(basemodels.local_for(base, named), base)
    return Path(engine.get().merge(str(adapter), local, str(out_dir)))


def available(local: str, source: str) -> str:
    """local, when it can be loaded on this machine; else one line saying how to get it."""
    from . import engine

    if engine.get().ships(local):
        return local
    path = Path(local).expanduser()
    if path.is_absolute() or local.startswith((".", "~")) or path.exists():
        if (path / MODEL_CONFIG).is_file():
            return str(path)
        raise _missing(local, source, f"there is no model at {local}")
    if not _in_hub_cache(local):
        raise _missing(local, source, f"the base model {local} is not on this machine",
                       f"Download it (`hf download {local}`), or")
    return local


def _in_hub_cache(repo_id: str) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return False
    return isinstance(try_to_load_from_cache(repo_id, MODEL_CONFIG), str)


def _missing(local: str, source: str, what: str, first: str = "") -> InvalidInput:
    return InvalidInput(f"{what} (the base-model table's local model for {source})",
                        f"{first + ' p' if first else 'P'}oint that row's local at a folder holding it in "
                        f"{basemodels.user_path()}.".strip())

