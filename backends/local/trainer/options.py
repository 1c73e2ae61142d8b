"""The local backend's options (-p key=value arrive as strings) and its hyperparameters.

Light: no torch here, so `ftm backends` and submit-time checks stay fast.
"""

from __future__ import annotations

from ftmanager.backend import Option, renamed as renamed_options
from ftmanager.errors import InvalidInput
from ftmanager.facts import auto_epochs
from ftmanager.hyperparameters import AUTO, DPO, Hyperparameters

from ..modeling.loading import checked_device
from .dpo import LOSSES, Settings

# The base learning rate that --learning-rate-multiplier scales: a common LoRA rate, and for
# full fine-tuning (every weight moves) HF Trainer's default, which the classic walk-throughs keep.
BASE_LEARNING_RATE = 2e-4
FULL_LEARNING_RATE = 5e-5
DEFAULT_BATCH_SIZE = 8  # examples per optimizer step when batch_size is "auto"

# name -> (type, default, help). Types: int, float, bool, str, "modules".
SPECS: dict[str, tuple] = {
    "training_type": (str, "qlora", "qlora (LoRA on a 4-bit base), lora, or full (every weight, AdamW)"),
    "learning_rate": (float, None, ("learning rate outright (default: 2e-4 x learning_rate_multiplier; "
                                    "full: 5e-5 x it)")),
    "quantize": (bool, True, "NF4 4-bit double-quantized base (QLoRA); false for plain LoRA"),
    "lora_r": (int, 16, "LoRA rank"),
    "lora_alpha": (int, 32, "LoRA alpha (scale = alpha / r)"),
    "lora_dropout": (float, 0.05, "dropout on the LoRA input"),
    "target_modules": ("modules", "all-linear", "comma-separated module names, or all-linear"),
    "max_length": (int, 1024, "tokens per example; longer ones are truncated and counted"),
    "gradient_accumulation_steps": (int, 1, "micro-batches per optimizer step (saves memory)"),
    "gradient_checkpointing": (bool, False, "recompute activations in backward (saves memory)"),
    "bf16": (bool, False, ("forward passes in bfloat16 under autocast, weights and optimizer in float32: "
                           "faster where the hardware has bf16 (CUDA; CPUs with AVX512-BF16 or AMX)")),
    "packing": (bool, True, "pack a micro-batch into one padding-free row with position ids"),
    "gpus": (int, 1, "processes/GPUs; more than 1 launches DDP through accelerate"),
    "device": (str, "auto", "auto, cpu, cuda or cuda:N"),
    "eval_every": (int, 0, "also compute validation metrics every N steps (0: per epoch)"),
    "template": (str, "auto", ("prompt format: chat (the model's template), alpaca or plain; "
                               "auto: chat, or alpaca for a model without one")),
    "keep": (str, "last", "the run's model: last, or best (lowest validation loss; needs validation data)"),
    "early_stopping": (int, 0, "stop after N validation passes without a lower loss (0: never)"),
    "dpo_loss": (str, "sigmoid", "DPO runs: sigmoid (DPO), robust (robust DPO) or ipo (IPO)"),
    "label_smoothing": (float, 0.0, "DPO runs: the chance a preference is flipped, in [0, 0.5) (cDPO)"),
}
DPO_OPTIONS = ("dpo_loss", "label_smoothing")
DEFAULT_BETA = 0.1  # OpenAI's and TRL's beta when "auto"
CHOICES = {"training_type": ("qlora", "lora", "full"), "template": ("auto", "chat", "alpaca", "plain"),
           "keep": ("last", "best"), "dpo_loss": LOSSES}

# The declaration ftm offers (`ftm backends`, the flags of `ftm submit`): "modules" is typed as text.
OPTIONS = {name: Option(help_, str if kind == "modules" else kind, default)
           for name, (kind, default, help_) in SPECS.items()}
_TRUE, _FALSE = {"1", "true", "yes", "on"}, {"0", "false", "no", "off"}
# Old spellings still taken: training_type was called method until the training method
# (supervised, dpo) took that name; old commands and old runs' options say -p method=qlora.
OLD_NAMES = {"method": "training_type"}


def renamed(options: dict) -> dict:
    """options with each old spelling under its new name (both given and differing: refused)."""
    return renamed_options(options, OLD_NAMES)


def _coerce(name: str, value):
    kind = SPECS[name][0]
    if value is None or kind is str:
        return value
    if kind == "modules":
        if isinstance(value, (list, tuple)):
            return list(value)
        return value if value == "all-linear" else [m.strip() for m in str(value).split(",") if m.strip()]
    if kind is bool:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in _TRUE | _FALSE:
            return text in _TRUE
        raise InvalidInput(f"option {name} must be true or false, not {value!r}", f"Use -p {name}=true.")
    try:
        return kind(value)
    except (TypeError, ValueError):
        raise InvalidInput(f"option {name} must be a number, not {value!r}", f"Use e.g. -p {name}=8.") from None


def resolve_options(options: dict) -> dict:
    """Every option with its typed value, defaults filled in; bad values refused."""
    options = renamed(options)
    out = {name: spec[1] for name, spec in SPECS.items()}
    for name, value in options.items():
        out[name] = _coerce(name, value)
    for name in ("lora_r", "max_length", "gradient_accumulation_steps", "gpus"):
        if out[name] < 1:
            raise InvalidInput(f"option {name} must be at least 1", f"Use e.g. -p {name}=1.")
    if out["early_stopping"] < 0:
        raise InvalidInput("option early_stopping must be 0 or more", "Use e.g. -p early_stopping=3.")
    for name, allowed in CHOICES.items():
        out[name] = str(out[name]).lower()
        if out[name] not in allowed:
            raise InvalidInput(f"option {name} must be one of {', '.join(allowed)}, not {out[name]!r}",
                               f"Use e.g. -p {name}={allowed[0]}.")
    Settings(loss=out["dpo_loss"], label_smoothing=out["label_smoothing"])  # refuses what DPO cannot use
    out["device"] = checked_device(out["device"])
    out["training_type"] = _training_type(out, asked=options)
    out["quantize"] = out["training_type"] == "qlora"
    return out


def _training_type(opts: dict, asked: dict) -> str:
    """training_type, which --no-quantize also says (lora) when it is not given; both must agree."""
    if "training_type" not in asked:
        return "qlora" if opts["quantize"] else "lora"
    if "quantize" in asked and opts["quantize"] != (opts["training_type"] == "qlora"):
        raise InvalidInput(f"training_type={opts['training_type']} and quantize={str(opts['quantize']).lower()} "
                           f"disagree (only qlora quantizes)", "Give -p training_type alone.")
    return opts["training_type"]


def needs_validation(opts: dict, validation_file) -> None:
    """Refuse keep=best and early stopping without validation data: they watch its loss."""
    asked = [f"{k}={opts[k]}" for k, default in (("keep", "last"), ("early_stopping", 0)) if opts[k] != default]
    if asked and not validation_file:
        raise InvalidInput(f"{' and '.join(asked)} need a validation set, and this run has none",
                           "Submit with --validation FILE or --split 0.1.")


def check_method(hp: Hyperparameters, asked: dict, opts: dict) -> None:
    """Refuse DPO's options on a supervised run, and DPO over several processes (not built)."""
    given = [name for name in DPO_OPTIONS if name in asked]
    if given and hp.method != DPO:
        raise InvalidInput(f"option {', '.join(given)} is for DPO runs, and this run is {hp.method}",
                           "Add --method dpo, or leave the option out.")
    if hp.method == DPO and opts["gpus"] > 1:
        raise InvalidInput("local DPO runs in one process", "Use -p gpus=1.")


def resolve_hyperparameters(hp: Hyperparameters, options: dict, n_examples: int) -> dict:
    """n_epochs, batch_size, learning_rate_multiplier and learning_rate as the run uses them
    (worked out once, at submit: the worker reads them from spec.json)."""
    training_type = renamed(options).get("training_type", "qlora")
    lr = options.get("learning_rate")
    base = FULL_LEARNING_RATE if training_type == "full" else BASE_LEARNING_RATE
    resolved = hp.resolved(n_epochs=auto_epochs(n_examples), batch_size=max(1, min(DEFAULT_BATCH_SIZE, n_examples // 4)),
                           learning_rate_multiplier=1.0)
    if hp.method == DPO and resolved.get("beta", AUTO) == AUTO:
        resolved["beta"] = DEFAULT_BETA
    return {**resolved, "learning_rate": float(lr) if lr is not None else hp.learning_rate(base),
            "training_type": training_type}
