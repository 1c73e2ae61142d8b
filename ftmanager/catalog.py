"""Datasets in the ledger (the catalog): import, look up, export, split, and their lineage."""

from __future__ import annotations

import errno
import hashlib
import json
import os
from pathlib import Path

from . import paths
from .errors import InvalidInput
from .ledger import ledger
from .tempfiles import clear_stale, noted, owned, shown


# --- datasets --------------------------------------------------------------------------


def add_dataset(path: str | Path, name: str | None = None, fmt: str = "auto",
                check: bool = True, model: str | None = None, skip_invalid: bool = False) -> tuple[dict, bool]:
    """Import a file: convert, validate, store content-addressed, record. Returns (row, new).

    model: validate by that model's rules (default: models.toml's default model).
    check=False stores data that is not for training (held-out prompts) without the
    training rules (such as OpenAI's minimum number of examples, facts.MIN_EXAMPLES).
    skip_invalid: store the valid examples; the row's "skipped" lists (line, why) of the rest.
    name: given for content already stored, it renames that dataset (the row's "renamed_from"
    holds the old name).
    """
    from . import data

    book = ledger().writable()  # first: a ledger we cannot write means nothing is written
    saved = data.save(Path(path), paths.datasets_dir(), fmt=fmt, name=name, check=check, model=model,
                      skip_invalid=skip_invalid)
    try:
        row, new = _record(saved, name or shown(Path(path).stem), source=shown(Path(path).resolve()))
    except BaseException:
        if not book.has_dataset(saved.sha256):  # not recorded: the file would be an orphan
            Path(saved.path).unlink(missing_ok=True)
        raise
    if not new and name and row["name"] != name:
        row = {**book.rename_dataset(row["id"], name), "renamed_from": row["name"]}
    return {**row, "skipped": saved.skipped} if skip_invalid else row, new


def _record(saved, name: str, source: str, parent_id=None, split=None) -> tuple[dict, bool]:
    from .data.preference import kind_of

    row = {
        "id": saved.sha256,
        "name": name,
        "format": saved.format,
        "source": source,
        "path": str(saved.path),
        "n_examples": saved.n_examples,
        "bytes": Path(saved.path).stat().st_size,
        "stats": json.dumps(getattr(saved.report, "stats", None) or {}, default=str),
        "parent_id": parent_id,
        "split": json.dumps(split) if split else None,
        "kind": kind_of(saved.format),
    }
    return ledger().add_dataset(row)


def dataset(ref: str) -> dict:
    """A dataset by id, id prefix or name."""
    return ledger().dataset(ref)


def datasets() -> list[dict]:
    return ledger().datasets()


def export_dataset(ref: str, to: str, out) -> int:
    """Write a stored dataset to out (an open text stream, such as standard output) in another
    format and record the export; returns the number of examples."""
    ds, book = dataset(ref), ledger().writable()
    tally = _Tally(out)
    n = _write(ds, to, tally)
    out.flush()  # all of it written before it is recorded
    _record_export(book, ds, to, None, tally, n)
    return n


def export_dataset_to(ref: str, to: str, output: Path) -> int:
    """Export to a file, atomically (an error or a kill leaves no partial file behind), and
    record it."""
    output, ds, book = Path(output), dataset(ref), ledger().writable()
    _check_output(output)
    tmp = output.with_name(f"{owned(TMP_PREFIX)}{output.name}")
    clear_stale(output.parent, TMP_PREFIX, f"-{output.name}")
    try:
        with noted(tmp):  # a kill from here on leaves tmp for the next ftm command to remove
            with open(tmp, "w", encoding="utf-8") as out:
                tally = _Tally(out)
                n = _write(ds, to, tally)
            os.replace(tmp, output)
    except OSError as e:
        full = e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
        raise InvalidInput(f"cannot write {shown(output)} ({e.strerror or e})",
                           "Free some space, or choose another -o path." if full else "Choose another -o path.") from None
    finally:
        tmp.unlink(missing_ok=True)
    _record_export(book, ds, to, output.resolve(), tally, n)
    return n


def _write(ds: dict, to: str, out) -> int:
    from . import data

    return data.export(Path(ds["path"]), to, out, kind=ds.get("kind") or "chat")


class _Tally:
    """A text stream that passes each write on, keeping the size and sha256 of its UTF-8 bytes."""

    def __init__(self, out):
        self.out, self.sha256, self.bytes = out, hashlib.sha256(), 0

    def write(self, text: str) -> int:
        data = text.encode("utf-8")
        self.sha256.update(data)
        self.bytes += len(data)
        return self.out.write(text)


def _record_export(book, ds: dict, to: str, path: Path | None, tally: _Tally, kept: int) -> dict:
    return book.add_export({"dataset_id": ds["id"], "target": to, "path": str(path) if path else None,
                            "sha256": tally.sha256.hexdigest(), "bytes": tally.bytes, "kept": kept,
                            "dropped": ds["n_examples"] - kept})


TMP_PREFIX = ".ftm-export-"


def _check_output(output: Path) -> None:
    """Refuse an -o that is not a file ftm may replace, before writing anything."""
    name = shown(output)
    if output.is_dir():
        raise InvalidInput(f"{name} is a directory", "Give a file path with -o, e.g. -o data.jsonl.")
    if output.exists() and not output.is_file():
        raise InvalidInput(f"{name} is not a regular file (a device, FIFO or socket)", "Give a file path with -o.")
    parent = output.parent
    if not parent.is_dir():
        raise InvalidInput(f"{shown(parent)}: no such directory", "Create it first, or choose another -o path.")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise InvalidInput(f"{shown(parent)} is not writable", "Choose another -o path.")


def dataset_info(ref: str) -> dict:
    """A dataset with its statistics, its uploads and the runs that used it."""
    row = dataset(ref)
    return {
        **row,
        "stats": json.loads(row["stats"]) if row["stats"] else {},
        "split": json.loads(row["split"]) if row["split"] else None,
        "uploads": ledger().uploads_of(row["id"]),
        "exports": ledger().exports_of(row["id"]),
        "runs": ledger().runs(dataset_id=row["id"]),
    }


def dataset_arg(ref: str, model: str | None = None) -> dict:
    """A dataset named on the command line: a file to import, or one in the ledger."""
    path = Path(ref)
    if path.exists() or ref.endswith((".jsonl", ".json")):
        return add_dataset(path, model=model)[0]
    return dataset(ref)


def split_dataset(ds: dict, fraction: float, seed: int) -> tuple[dict, dict]:
    from . import data

    if not 0 < fraction < 1:
        raise InvalidInput(f"--split must be between 0 and 1, not {fraction}", "Try --split 0.1.")
    train, valid = data.split(Path(ds["path"]), fraction, seed, paths.datasets_dir(), kind=ds.get("kind") or "chat")
    info = {"fraction": fraction, "seed": seed}
    train_row = _record(train, f"{ds['name']}-train", ds["source"], ds["id"], {**info, "part": "train"})[0]
    valid_row = _record(valid, f"{ds['name']}-valid", ds["source"], ds["id"], {**info, "part": "validation"})[0]
    return train_row, valid_row


def lineage(ref: str) -> dict:
    """The tree dataset -> derived datasets, uploads, exports, runs (and their re-runs) -> models."""
    ds = dataset(ref)
    children = [lineage(child["id"]) for child in ledger().datasets() if child["parent_id"] == ds["id"]]
    runs_ = [_run_node(r) for r in ledger().runs(dataset_id=ds["id"]) if not r["parent_run_id"]
             or ledger().run(r["parent_run_id"])["dataset_id"] != ds["id"]]
    return {"dataset": {k: ds[k] for k in ("id", "name", "format", "kind", "n_examples", "split")},
            "uploads": ledger().uploads_of(ds["id"]), "exports": ledger().exports_of(ds["id"]),
            "derived": children, "runs": runs_}


def _run_node(run: dict) -> dict:
    models = [{"model_id": c["model_id"], "kind": "checkpoint", "step": c["step"]}
              for c in ledger().checkpoints(run["id"]) if c["model_id"]]
    if run["result_model"]:
        models.append({"model_id": run["result_model"], "kind": "model", "path": run["result_path"]})
    from .methods import label

    return {"run": {k: run[k] for k in ("id", "backend", "base_model", "status", "provider_job_id", "base_run_id")},
            "on_top_of": label(run.get("base_run_id")), "models": models, "reruns": [_run_node(c) for c in ledger().children(run["id"])]}
