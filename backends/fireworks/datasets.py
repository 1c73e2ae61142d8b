"""Fireworks' data rules, and a Fireworks dataset per content and account: created with its exampleCount, its file
uploaded, then waited for until READY. Its id comes from the content's sha256, so a start that
was cut off anywhere finds the same dataset again instead of making another."""

from __future__ import annotations

import os
import time
from pathlib import Path

from ftmanager.backend import Rules, Uploads
from ftmanager.errors import BackendError, Refused
from ftmanager.hosted import poll_scale

MAX_UPLOAD_BYTES = 150 << 20  # datasets:upload takes up to 150 MB in one request
ROLES = ("system", "user", "assistant", "tool")


def _holds(example: dict) -> None:
    """Fireworks' chat format: OpenAI's roles (tools included), a reply from the assistant."""
    from ftmanager.data.export import CannotHold

    messages = example["messages"]
    for i, m in enumerate(messages, 1):
        if m.get("role") not in ROLES:
            raise CannotHold(f"message {i} has role {m.get('role')!r}, which fireworks does not take")
    if not any(m.get("role") == "assistant" for m in messages):
        raise CannotHold("it has no assistant message for fireworks to train on")


# Fireworks' data rules: the chat format above, at least 3 examples (it refuses smaller datasets)
DATA_RULES = Rules(3, None, _holds)


def ensure_dataset(backend, path: Path, dataset_id: str, uploads: Uploads) -> str:
    """The name (accounts/<a>/datasets/<id>) of dataset_id's data at this account, READY."""
    with uploads.lock(dataset_id, backend.account):  # concurrent starts wait, then reuse it
        name = uploads.get(dataset_id, backend.account)
        if name and _state(backend, name.rsplit("/", 1)[-1]) == "READY":
            return name
        if name:
            uploads.forget(dataset_id, backend.account)
        name = _made_ready(backend, Path(path), f"ftm-{dataset_id[:40]}")
        uploads.put(dataset_id, backend.account, name, os.path.getsize(path))
    return name


def _state(backend, ds_id: str) -> str | None:
    """The dataset's state, or None where the account has no such dataset."""
    dataset = backend._found(lambda: backend.client.datasets.get(ds_id), answered=True)
    return dataset.state if dataset is not None else None


def _made_ready(backend, path: Path, ds_id: str) -> str:
    size = path.stat().st_size
    if size > MAX_UPLOAD_BYTES:
        raise Refused(f"{path.name} is {size / 1e6:.0f} MB: ftm sends Fireworks datasets of up to "
                      f"{MAX_UPLOAD_BYTES >> 20} MB in one request", "Split the dataset, or upload it with firectl.")
    _create(backend, ds_id, _examples(path))
    if _state(backend, ds_id) != "READY":
        _upload(backend, path, ds_id)
    _wait_ready(backend, ds_id)
    return f"accounts/{backend.account_id}/datasets/{ds_id}"


def _create(backend, ds_id: str, count: int) -> None:
    """Create the dataset with its example count, once: one an earlier start made is kept (it is
    uploaded next unless it is READY)."""
    import fireworks

    datasets = backend.client.with_options(max_retries=0).datasets

    def create() -> str:
        try:
            with backend._refusals():
                datasets.create(dataset_id=ds_id, dataset={"example_count": str(count), "user_uploaded": {},
                                                           "display_name": f"ftm {ds_id[4:16]}"})
        except fireworks.ConflictError:
            pass
        return ds_id

    backend.create_once(create, lambda _: ds_id if _state(backend, ds_id) else None, ds_id)


def _examples(path: Path) -> int:
    """Examples in a canonical JSONL file: one per non-empty line."""
    with open(path, "rb") as fh:
        return sum(1 for line in fh if line.strip())


def _upload(backend, path: Path, ds_id: str) -> None:
    """The file, streamed from disk; an upload whose answer was lost counts if the dataset took it."""
    try:
        with open(path, "rb") as fh, backend._refusals():
            backend.client.datasets.upload(ds_id, file=(f"{ds_id}.jsonl", fh, "application/jsonl"))
    except Exception:
        if _state(backend, ds_id) != "READY":
            raise


def _wait_ready(backend, ds_id: str) -> None:
    """Poll the dataset until it is READY (0.25 s doubling to 10 s, times FTM_POLL_SCALE, as every
    poll of ftm's), at most ready_timeout seconds."""
    scale = poll_scale()
    deadline, wait = time.monotonic() + backend.ready_timeout, 0.25 * scale
    while True:
        with backend._answered():
            found = backend.client.datasets.get(ds_id)
        if found.state == "READY":
            return
        if found.status and found.status.code not in (None, "OK"):
            raise Refused(f"Fireworks could not take dataset {ds_id}: {found.status.message or found.status.code}",
                          "Fix the data (`ftm datasets validate FILE --provider fireworks`) and submit again.")
        if time.monotonic() > deadline:
            raise BackendError(f"Fireworks dataset {ds_id} is still {found.state} after {backend.ready_timeout:g} s",
                               "Run `ftm sync` later: the run starts once the dataset is READY.")
        time.sleep(wait)
        wait = min(10.0 * scale, wait * 2)
