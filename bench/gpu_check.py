"""One short run on a GPU machine: ftm's local training and serving on CUDA, measured.

    python bench/gpu_check.py             # CUDA: a ~1B Llama in bf16, a few minutes
    python bench/gpu_check.py --smoke     # CPU: a tiny Llama in float32, seconds (tests/test_gpu_check.py)

Nothing is downloaded: the model is a Llama-architecture config (~1B parameters: 22 layers,
hidden 2048, like TinyLlama) initialised at random, with a character-level tokenizer and a chat
template built here; the data are generated chats (bench_local's spread: tens to hundreds of words).
1. QLoRA, LoRA and full fine-tuning, each through ftm's real worker, started as `ftm submit
   --backend local` starts it (LocalBackend.start: spec in a run directory, the detached
   `python -m ftm_backends.local.trainer.worker`). Each run is cancelled after its first step (the
   worker saves a checkpoint) and resumed from it (a new worker; --smoke: the LoRA run only),
   then generates from its result;
   checked: the loss falls, resume carries on at the next step, the checkpoint and the result are
   on disk, generation answers. Measured in the resumed worker from its second step to its last:
   tokens/s; its peak GPU memory (torch.cuda.max_memory_allocated, which the worker reports); and
   MFU: the epoch's useful FLOPs (bench/flops.py) / seconds / this card's bf16 matmul peak at the
   model's layer shapes, timed here.
2. TRL's SFTTrainer on the same model at matched settings (LoRA r=16, alpha 32, dropout 0.05,
   all linear layers, bf16, packed padding-free rows holding as many tokens per step as ftm's
   steps, the same learning rate, one epoch), in a process of its own (bench/gpu_compare.py,
   as is part 3); skipped with a note when trl is not installed.
3. Serving on CUDA: ftm's model pool (what `ftm serve`, `generate` and `eval` share) answering
   every prompt at once, beside transformers' `generate` one prompt at a time and all prompts as
   one left-padded batch, on the base model (greedy, the same prompts).
Figures go to gpu_check.json in the folder $OUT names (the current folder when unset), and a
summary is printed. Exit status 1 when a check fails.
On a machine where ftm is not installed, the script imports it from this checkout; a folder of
wheels (e.g. bitsandbytes, trl, orjson) can be installed offline first with --wheels DIR.
"""

from __future__ import annotations

import argparse
import json
import os
import string
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see backends/local/__init__.py
ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]
METHODS = ("qlora", "lora", "full")
LORA = {"lora_r": 16, "lora_alpha": 32, "lora_dropout": 0.05, "target_modules": "all-linear"}
SPECIALS = ["<unk>", "<pad>", "<|im_start|>", "<|im_end|>"]
CHAT_TEMPLATE = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
                 "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


class Size:
    """What one mode trains on: the model's shape and the run's size."""

    def __init__(self, smoke: bool):
        self.smoke, self.device = smoke, "cpu" if smoke else "cuda"
        self.layers, self.hidden, self.inter = (2, 64, 128) if smoke else (22, 2048, 5632)
        self.heads, self.kv_heads = (4, 2) if smoke else (32, 4)
        self.examples, self.batch, self.max_length = (24, 4, 512) if smoke else (512, 16, 2048)
        self.prompts, self.new_tokens = (4, 8) if smoke else (16, 64)


def ensure_importable() -> None:
    """Make `ftm_backends` importable here and in the worker when ftm is not installed."""
    try:
        import ftm_backends  # noqa: F401
        return
    except ImportError:
        pass
    shim = Path(tempfile.mkdtemp(prefix="ftm-shim-"))
    (shim / "ftm_backends").symlink_to(ROOT / "backends")
    sys.path.insert(0, str(shim))
    os.environ["PYTHONPATH"] = os.pathsep.join([str(shim), str(ROOT), os.environ.get("PYTHONPATH", "")])


def build_model(path: Path, size: Size) -> Path:
    """A randomly initialised Llama with a character-level tokenizer and a chat template."""
    import torch
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
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
    config = LlamaConfig(vocab_size=len(vocab), hidden_size=size.hidden, intermediate_size=size.inter,
                         num_hidden_layers=size.layers, num_attention_heads=size.heads,
                         num_key_value_heads=size.kv_heads, max_position_embeddings=4096, pad_token_id=1,
                         bos_token_id=2, eos_token_id=3, tie_word_embeddings=True,
                         initializer_range=0.2 if size.smoke else 0.02)
    torch.manual_seed(0)
    with torch.device(size.device):  # initialised where it trains: seconds, not minutes, for 1B
        model = LlamaForCausalLM(config)
    model.to(torch.float32 if size.smoke else torch.bfloat16).save_pretrained(path)
    tok.save_pretrained(path)
    return path


def write_data(path: Path, size: Size) -> list[dict]:
    from bench_local import spread_dataset

    rows = spread_dataset(size.examples)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return rows


# --- 1. training through the real worker ---------------------------------------------------

def spec_for(method: str, model: Path, data: Path, home: Path, size: Size):
    from ftmanager.backend import RunSpec

    how = {"training_type": method, **({} if method == "full" else LORA)}
    lr = {"learning_rate": 1e-4 if method == "full" else 1e-3}
    return RunSpec(run_id=f"gpu-{method}", base_model=str(model), training_file=data, dataset_id="generated",
                   n_examples=size.examples, run_dir=home / f"gpu-{method}", seed=0,
                   hyperparameters={"n_epochs": 1, "batch_size": size.batch},
                   options={**how, **lr, "device": size.device, "max_length": size.max_length})


def records(run_dir: Path) -> list[dict]:
    from ftm_backends.local.trainer import rundir

    path = run_dir / rundir.PROGRESS
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def wait_for(run_dir: Path, statuses: set, skip: int, timeout: float = 600) -> list[dict]:
    """The progress records after the first `skip`, once the run reaches one of statuses."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        new = records(run_dir)[skip:]
        if any(r["kind"] == "status" and r["status"] in statuses | {"failed"} for r in new):
            return new
        time.sleep(0.2)
    raise TimeoutError(f"{run_dir.name} did not finish in {timeout:.0f} s")


def train_one(method: str, model: Path, data: Path, home: Path, size: Size, resume: bool) -> dict:
    """Start, cancel after the first step and resume to the end (or train in one go): what the
    user sees, checked."""
    from ftm_backends.local import LocalBackend
    from ftm_backends.local.trainer import rundir

    backend, spec = LocalBackend(), spec_for(method, model, data, home, size)
    job = backend.start(spec, None)
    first: list[dict] = []
    if resume:
        (spec.run_dir / rundir.CANCEL).touch()  # the worker is still loading: it stops after step 1
        first = wait_for(spec.run_dir, {"cancelled", "succeeded"}, 0)
        backend.resume(job, spec)
    second = wait_for(spec.run_dir, {"succeeded"}, len(first))
    out = {"first_run": status_of(first), "status": status_of(second), "log": str(spec.run_dir / rundir.LOG)}
    if out["status"] != "succeeded":
        out["error"] = next((r.get("error") for r in second if r.get("status") == "failed"), None)
        return out
    out.update(measure(second, first, spec, size))
    return out


def status_of(recs: list[dict]) -> str | None:
    return next((r["status"] for r in reversed(recs) if r["kind"] == "status"), None)


def measure(second: list[dict], first: list[dict], spec, size: Size) -> dict:
    """Checks and figures of a run from its progress records (first worker's, resumed one's)."""
    steps = [r["data"] for r in first + second if r["kind"] == "metrics"]
    after = [r for r in second if r["kind"] == "metrics"]
    resumed = next((r for r in second if r["kind"] == "event" and r["message"].startswith("Resumed")), None)
    result = next(r for r in second if r["kind"] == "result")
    losses = [s["train_loss"] for s in steps]
    k = max(1, len(losses) // 4)
    lengths, per_step = token_plan(spec, size)
    timed = after[1:]  # from the end of the resumed worker's first step: no warm-up in the figure
    seconds = timed[-1]["t"] - after[0]["t"] if timed else float("nan")
    tokens = sum(per_step[r["data"]["step"] - 1] for r in timed)
    return {"steps": [s["step"] for s in steps], "loss_first": sum(losses[:k]) / k,
            "loss_last": sum(losses[-k:]) / k, "resumed_at": after[0]["data"]["step"] if after else None,
            "total_steps": after[-1]["data"]["total_steps"] if after else None,
            "resumed_event": resumed["message"] if resumed else None,
            "checkpoint_saved": any(r["kind"] == "checkpoint" for r in first + second),
            "result_path": result["path"], "result_on_disk": Path(result["path"]).exists(),
            "tokens_per_s": tokens / seconds if timed else None, "timed_seconds": seconds,
            "peak_gpu_memory_gb": result.get("peak_gpu_memory", 0) / 2**30 if "peak_gpu_memory" in result else None,
            "epoch_flops": epoch_flops(spec, lengths), "epoch_tokens": sum(lengths), "timed_tokens": tokens}


def token_plan(spec, size: Size) -> tuple[list[int], list[int]]:
    """Each example's tokens as the worker encodes them, and each optimizer step's tokens."""
    from ftm_backends.local.modeling import encoding, loading as models
    from ftm_backends.local.trainer import batching

    tok = models.load_tokenizer(spec.base_model)
    rows = [json.loads(line) for line in Path(spec.training_file).read_text().splitlines()]
    encoded, _ = encoding.encode_all(tok, rows, size.max_length)
    lengths = [len(e.input_ids) for e in encoded]
    plan = batching.steps(lengths, size.batch, spec.seed, 1, grouped=False)
    return lengths, [sum(lengths[i] for i in idx) for _, idx, _ in plan]


def epoch_flops(spec, lengths: list[int]) -> float:
    from ftm_backends.local.modeling import encoding, loading as models
    from transformers import AutoConfig

    import flops

    tok = models.load_tokenizer(spec.base_model)
    rows = [json.loads(line) for line in Path(spec.training_file).read_text().splitlines()]
    trained = sum(e.n_trained for e in encoding.encode_all(tok, rows, spec.options["max_length"])[0])
    method = "full" if spec.options["training_type"] == "full" else "lora"
    return flops.epoch_flops(AutoConfig.from_pretrained(spec.base_model), lengths, trained, method, LORA["lora_r"])


def generate_check(result_path: str, base: Path, size: Size) -> bool:
    """`ftm generate` of the run's model answers every prompt (with text; the model is random)."""
    from ftm_backends.local import LocalBackend

    answers = LocalBackend().generate(None, result_path, str(base), prompts(size)[:2], max_new_tokens=size.new_tokens)
    return len(answers) == 2 and all(isinstance(a, str) and a for a in answers)


def prompts(size: Size) -> list[list[dict]]:
    return [[{"role": "user", "content": f"Tell me about the river city number {i}."}] for i in range(size.prompts)]


# --- the run -------------------------------------------------------------------------------

def run_all(size: Size, work: Path) -> dict:
    """Every part; the figures and the checks, as one dict."""
    import torch

    import flops

    from transformers import AutoConfig

    model = build_model(work / "model", size)
    data = work / "train.jsonl"
    write_data(data, size)
    dtype = torch.float32 if size.smoke else torch.bfloat16
    peak = flops.matmul_peak(AutoConfig.from_pretrained(model), dtype, size.device,
                             tokens=256 if size.smoke else 4096, seconds=0.5 if size.smoke else 3.0)
    figures = {"device": device_name(size), "dtype": str(dtype).replace("torch.", ""), "matmul_peak_flops": peak,
               "model_parameters": parameters(model), "train": {}, "checks": {}}
    os.environ["FTM_HOME"] = str(work / "home")
    for method in METHODS:  # --smoke resumes LoRA only: each worker start costs seconds of imports
        result = train_one(method, model, data, work / "runs", size, resume=not size.smoke or method == "lora")
        if result.get("status") == "succeeded":
            result["generates"] = generate_check(result["result_path"], model, size)
            share = result["timed_tokens"] / result["epoch_tokens"]
            result["mfu"] = result["epoch_flops"] * share / result["timed_seconds"] / peak
        figures["train"][f"ftm-{method}"] = result
    from gpu_compare import serve_part, trl_part

    release_shared_pool(size)  # the generate checks' models: not part of what serving measures
    trl = trl_part(model, data, size)
    if "tokens_per_s" in trl:
        lora = figures["train"]["ftm-lora"]
        trl["mfu"] = lora["epoch_flops"] * trl["timed_tokens"] / lora["epoch_tokens"] / trl["timed_seconds"] / peak
    figures["train"]["trl-sft-lora"] = trl
    figures["serve"] = serve_part(model, prompts(size), size)
    figures["checks"] = checks(figures["train"])
    return figures


def release_shared_pool(size: Size) -> None:
    from ftm_backends.local.engine.pool import shared

    shared().close()
    if size.device == "cuda":
        import torch

        torch.cuda.empty_cache()


def checks(train: dict) -> dict:
    """Each check by name: True when it held."""
    out = {}
    for name, r in train.items():
        if not name.startswith("ftm-"):
            continue
        ok = r.get("status") == "succeeded"
        out[f"{name} succeeded"] = ok
        out[f"{name} loss falls"] = ok and r["loss_last"] < r["loss_first"]
        if r.get("first_run") is not None:
            out[f"{name} resumed at step 2"] = ok and r["first_run"] == "cancelled" and r["resumed_at"] == 2
        out[f"{name} every step trained once"] = ok and r["steps"] == list(range(1, r["total_steps"] + 1))
        out[f"{name} saved"] = ok and r["checkpoint_saved"] and r["result_on_disk"]
        out[f"{name} generates"] = ok and r["generates"]
    return out


def device_name(size: Size) -> str:
    import platform

    import torch

    if size.device == "cuda":
        return torch.cuda.get_device_name(0)
    return platform.processor() or platform.machine()


def parameters(model: Path) -> int:
    from transformers import AutoConfig, AutoModelForCausalLM

    with __import__("torch").device("meta"):
        return sum(p.numel() for p in AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(model)).parameters())


def summary(f: dict) -> None:
    print(f"\n== gpu_check on {f['device']} ({f['dtype']}), a {f['model_parameters'] / 1e9:.2f}B-parameter Llama ==")
    print(f"{f['dtype']} matmul peak at the model's layer shapes: {f['matmul_peak_flops'] / 1e12:.2f} TFLOP/s")
    print(f"{'training':14} {'tokens/s':>10} {'peak GB':>8} {'MFU':>6} {'loss first->last':>18}")
    for name, r in f["train"].items():
        if "skipped" in r or r.get("tokens_per_s") is None:
            print(f"{name:14} {r.get('skipped') or r.get('status')}")
            continue
        peak = "-" if r.get("peak_gpu_memory_gb") is None else f"{r['peak_gpu_memory_gb']:.1f}"
        losses = f"{r['loss_first']:.3f}->{r['loss_last']:.3f}" if "loss_first" in r else f"{r['loss']:.3f} (mean)"
        print(f"{name:14} {r['tokens_per_s']:10.0f} {peak:>8} {r['mfu']:6.1%} {losses:>18}")
    print(f"{'serving':14} {'requests/s':>10} {'new tok/s':>10} {'peak GB':>8}")
    for name, r in f["serve"].items():
        peak = "-" if r["peak_gpu_memory_gb"] is None else f"{r['peak_gpu_memory_gb']:.1f}"
        print(f"{name:14} {r['requests_per_s']:10.2f} {r['new_tokens_per_s']:10.0f} {peak:>8}")
    failed = [name for name, ok in f["checks"].items() if not ok]
    print(f"checks: {len(f['checks']) - len(failed)} of {len(f['checks'])} held" +
          (f"; FAILED: {', '.join(failed)}" if failed else ""))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="CPU, a tiny model, seconds")
    parser.add_argument("--wheels", help="a folder of wheels to pip install offline first")
    args = parser.parse_args()
    size = Size(args.smoke)
    if args.wheels:
        wheels = sorted(str(p) for p in Path(args.wheels).glob("*.whl"))
        subprocess.run([sys.executable, "-m", "pip", "install", "--no-index", "--no-deps", *wheels], check=True)
    ensure_importable()
    import torch

    if not size.smoke and not torch.cuda.is_available():
        print("Error: no CUDA device is visible. Run it on a GPU machine, or with --smoke on a CPU.")
        return 1
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as work:
        figures = run_all(size, Path(work))
    out = Path(os.environ.get("OUT") or ".") / "gpu_check.json"
    out.write_text(json.dumps(figures, indent=1, default=str))
    summary(figures)
    print(f"figures: {out}")
    return 0 if all(figures["checks"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
