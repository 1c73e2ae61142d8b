"""A Fireworks fine-tune's files brought home: models/{id}:getDownloadEndpoint gives a signed URL
per file; each is streamed to disk under a temporary name and renamed once whole.

Fireworks gives a LoRA addon's adapter (adapter_config.json, adapter_model.safetensors); merged
weights are made by the inference engine (pulls.merge), on the base model the adapter names (or
the base-model table's local model for the job's base)."""

from __future__ import annotations

import tempfile
from pathlib import Path, PurePosixPath

from ftmanager import pulls
from ftmanager.errors import BackendError, InvalidInput

CHUNK = 1 << 20


def download(backend, job_id: str, result_model: str | None, out_dir: Path, merged: bool) -> Path:
    """out_dir holding the job's adapter (merged=False) or a whole merged model (merged=True)."""
    if not result_model:
        raise InvalidInput(f"Fireworks job {job_id} has made no model yet", "Wait for it: `ftm watch RUN`.")
    account, model_id = _parts(result_model)
    with backend._answered():
        urls = backend.client.models.get_download_endpoint(model_id, account_id=account).filename_to_signed_urls
    if not urls:
        raise BackendError(f"Fireworks gives no files for {result_model}", "Try again later: `ftm pull` resumes.")
    if not merged:
        out_dir.mkdir(parents=True, exist_ok=True)
        _fetch_all(urls, out_dir)
        return out_dir
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    with backend._answered():
        base = backend.client.supervised_fine_tuning_jobs.get(job_id).base_model or ""
    with tempfile.TemporaryDirectory(dir=out_dir.parent, prefix=".ftm-adapter-") as tmp:
        _fetch_all(urls, Path(tmp))
        return pulls.merge(Path(tmp), base, out_dir)


def _parts(result_model: str) -> tuple[str, str]:
    """accounts/<account>/models/<id> -> (account, id)."""
    parts = result_model.split("/")
    if len(parts) != 4 or parts[0] != "accounts" or parts[2] != "models":
        raise InvalidInput(f"{result_model!r} is not a Fireworks model name", "Expected accounts/<account>/models/<id>.")
    return parts[1], parts[3]


def _fetch_all(urls: dict[str, str], out_dir: Path) -> None:
    import httpx

    with httpx.Client(timeout=httpx.Timeout(60.0, connect=10.0), follow_redirects=True) as http:
        for name, url in sorted(urls.items()):
            _fetch(http, url, out_dir / _safe(name))


def _safe(name: str) -> Path:
    """A file name from the provider, refused when it would land outside the folder."""
    path = PurePosixPath(name)
    if not name or path.is_absolute() or ".." in path.parts or "\\" in name:
        raise BackendError(f"Fireworks named a file {name!r}, outside the model's folder", "Nothing was written there.")
    return Path(*path.parts)


def _fetch(http, url: str, target: Path) -> None:
    """One signed URL streamed to target (no key: the URL is its own permission)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    part = target.with_name(f".{target.name}.part")
    try:
        with http.stream("GET", url) as answer, open(part, "wb") as out:
            if answer.status_code != 200:
                raise BackendError(f"downloading {target.name} from Fireworks failed (HTTP {answer.status_code})",
                                   "The signed URLs expire: run `ftm pull` again for new ones.")
            for chunk in answer.iter_bytes(CHUNK):
                out.write(chunk)
        part.replace(target)
    finally:
        part.unlink(missing_ok=True)
