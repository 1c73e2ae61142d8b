"""Use a trained adapter: generate replies through the chat template, or export a model."""

from __future__ import annotations

import shutil
from pathlib import Path

from ftmanager.errors import InvalidInput

from . import chat, model as models

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


def generate(result_path, base_model, conversations: list[list[dict]], max_new_tokens: int = 256,
             temperature: float = 0.0, batch_size: int = 16) -> list[str]:
    """One assistant reply per conversation, greedy when temperature is 0."""
    tok, model, device = load(result_path, base_model)
    replies: list[str] = []
    for k in range(0, len(conversations), batch_size):
        replies += _generate_batch(tok, model, device, conversations[k:k + batch_size],
                                   max_new_tokens, temperature)
    return replies


def _generate_batch(tok, model, device, conversations, max_new_tokens, temperature) -> list[str]:
    import torch

    texts = [chat.prompt_text(tok, c) for c in conversations]
    tok.padding_side = "left"  # so every prompt ends where generation starts
    enc = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(device)
    sampling = {"do_sample": True, "temperature": temperature} if temperature > 0 else {"do_sample": False}
    with torch.no_grad():
        out = model.generate(**enc, max_new_tokens=max_new_tokens, pad_token_id=tok.pad_token_id,
                             **sampling)
    new = out[:, enc["input_ids"].shape[1]:]
    return [t.strip() for t in tok.batch_decode(new, skip_special_tokens=True)]


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
