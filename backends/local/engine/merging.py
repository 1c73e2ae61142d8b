"""Load a trained model whole (the adapter merged in) to export or score it; answers come from pool.py."""

from __future__ import annotations

import shutil
from pathlib import Path

from ftmanager.errors import InvalidInput

from ..modeling import loading as models


def _quiet() -> None:
    """No weight-loading progress bars or deprecation chatter on a user's terminal."""
    import warnings

    from transformers.utils import logging

    logging.set_verbosity_error()
    logging.disable_progress_bar()
    warnings.filterwarnings("ignore", category=FutureWarning, module="transformers")


def load(result_path: str | None, base_model: str | None, device: str = "auto"):
    """Tokenizer and model in eval mode: the base alone, or with the adapter merged in."""
    from peft import PeftModel

    _quiet()

    device = models.pick_device(device)
    where = models.target(result_path, base_model)
    has_tok = where.adapter and (Path(where.adapter) / "tokenizer_config.json").exists()
    tok = models.load_tokenizer(where.adapter if has_tok else where.base)
    model = models.load_base(where.base, device, quantize=False)
    if where.adapter:
        model = PeftModel.from_pretrained(model, where.adapter).merge_and_unload()
    return tok, model.eval(), device


def export(result_path: str, base_model: str | None, out_dir: str, merge: bool = True) -> Path:
    """A merged safetensors model (or the bare adapter) with tokenizer and chat template."""
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()):
        raise InvalidInput(f"{out} exists and is not empty", "Choose a new directory with -o.")
    if not merge:
        shutil.copytree(result_path, out, dirs_exist_ok=True)
        return out
    tok, model, _device = load(result_path, base_model, device="cpu")
    model.save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)
    return out
