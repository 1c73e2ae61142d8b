"""A Fireworks fine-tune's files brought home: models/{id}:getDownloadEndpoint gives a signed URL
per file; each is streamed to disk under a temporary name and renamed once whole.

Fireworks gives a LoRA addon's adapter (adapter_config.json, adapter_model.safetensors); merged
weights are made by the inference engine (pulls.merge), on the base model the adapter names (or
the base-model table's local model for the job's base)."""

from __future__ import annotations

import tempfile
from pathlib import Path

from ftmanager import pulls
from ftmanager.errors import BackendError, InvalidInput


def download(backend, job_id: str, result_model: str | None, out_dir: Path, merged: bool) -> Path:
    """out_dir holding the job's adapter (merged=False) or a whole merged model (merged=True)."""
    if not result_model:
        raise InvalidInput(f"Fireworks job {job_id} has made no model yet", "Wait for it: `ftm watch RUN`.")
    account, model_id = _parts(result_model)
    try:
        with backend._answered():
            answer = backend.client.models.get_download_endpoint(model_id, account_id=account)
    except ValueError:  # the SDK's JSON decoding of a web page or other non-JSON answer
        raise BackendError(f"Fireworks answered the download endpoint of {result_model} with no JSON",
                           "Check FIREWORKS_BASE_URL, then run `ftm pull` again.") from None
    urls = getattr(answer, "filename_to_signed_urls", None)
    if not isinstance(urls, dict) or not urls:
        raise BackendError(f"Fireworks gives no files for {result_model}", "Try again later: `ftm pull` resumes.")
    if not merged:
        out_dir.mkdir(parents=True, exist_ok=True)
        _fetch_all(urls, out_dir)
        return out_dir
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    with backend._answered():
        base = backend._job(job_id).base_model or _addon_base(backend, account, model_id)
    with tempfile.TemporaryDirectory(dir=out_dir.parent, prefix=".ftm-adapter-") as tmp:
        _fetch_all(urls, Path(tmp))
        return pulls.merge(pulls.checked(Path(tmp), "Fireworks"), base, out_dir)


def _addon_base(backend, account: str, model_id: str) -> str:
    """The base model an addon trained on top of another addon (a warm-started job names none) is
    on, as its model says."""
    details = backend.client.models.get(model_id, account_id=account).peft_details
    return (details.base_model if details is not None else None) or ""


def _parts(result_model: str) -> tuple[str, str]:
    """accounts/<account>/models/<id> -> (account, id)."""
    parts = result_model.split("/")
    if len(parts) != 4 or parts[0] != "accounts" or parts[2] != "models":
        raise InvalidInput(f"{result_model!r} is not a Fireworks model name", "Expected accounts/<account>/models/<id>.")
    return parts[1], parts[3]


def _fetch_all(urls: dict, out_dir: Path) -> None:
    """Every signed URL streamed to its file (no key: the URL is its own permission), every name
    and link checked before anything is downloaded."""
    from ftmanager.downloads import check_url, fetch, safe_name

    files = {safe_name(name, "Fireworks"): check_url(url, "Fireworks") for name, url in urls.items()}
    folders = {parent for path in files for parent in path.parents}
    clash = next((path for path in files if path in folders), None)
    if clash is not None:
        raise BackendError(f"Fireworks named {clash.as_posix()!r} both a file and a folder",
                           "Nothing was kept; tell the provider, or try `ftm pull` later.")
    for path, url in sorted(files.items()):
        (out_dir / path).parent.mkdir(parents=True, exist_ok=True)
        fetch(url, out_dir / path, "Fireworks")

