"""What a local run must never do: run code from a checkpoint, hand secrets to its worker, or
print noise a user cannot act on."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from fixtures_local import tiny_llama, tiny_spec  # noqa: F401  (fixture)
from test_local_backend import follow

torch = pytest.importorskip("torch")

from ftm_backends.local import LocalBackend  # noqa: E402
from ftm_backends.local.trainer import rundir  # noqa: E402
from ftm_backends.local.trainer.checkpoints import restore  # noqa: E402
from ftm_backends.local.trainer.options import resolve_options  # noqa: E402
from ftmanager.errors import FtmError  # noqa: E402


class Crafted:
    """Unpickling this creates a file: what a crafted state.pt in a shared FTM_HOME could do."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return open, (self.marker, "w")


def test_a_crafted_checkpoint_state_runs_no_code(tmp_path):
    ckpt = tmp_path / "checkpoints" / "step-3"
    ckpt.mkdir(parents=True)
    marker = tmp_path / "code-ran"
    torch.save({"step": 3, "optimizer": Crafted(str(marker))}, ckpt / "state.pt")
    opt = torch.optim.AdamW(torch.nn.Linear(2, 2).parameters())
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    with pytest.raises(FtmError, match="holds more than tensors and numbers"):
        restore(ckpt, opt, sched, resolve_options({}))
    assert not marker.exists()


def worker_environ(pid: int) -> dict[str, str]:
    raw = open(f"/proc/{pid}/environ", "rb").read().split(b"\0")
    return dict(item.decode().split("=", 1) for item in raw if b"=" in item)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_the_worker_gets_what_torch_needs_and_no_secret(tmp_path, tiny_llama, monkeypatch):  # noqa: F811
    secrets = {"HF_TOKEN": "hf_x", "AWS_SECRET_ACCESS_KEY": "aws_x", "ANTHROPIC_API_KEY": "k",
               "OPENAI_API_KEY": "sk-x", "FTM_SERVE_API_KEY": "serve-x", "DATABASE_PASSWORD": "pw",
               "GITHUB_TOKEN": "ghp_x", "HTTPS_PROXY": "http://me:pw@proxy:3128", "SOME_APP_SETTING": "x"}
    needed = {"OMP_NUM_THREADS": "2", "MKL_NUM_THREADS": "2", "CUDA_VISIBLE_DEVICES": "", "HF_HUB_OFFLINE": "1",
              "TRANSFORMERS_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"), "TORCH_HOME": str(tmp_path),
              "NO_PROXY": "localhost", "LC_ALL": "C.UTF-8"}
    for name, value in {**secrets, **needed}.items():
        monkeypatch.setenv(name, value)
    backend = LocalBackend()
    spec = tiny_spec(tmp_path, tiny_llama, n_epochs=1)
    job = backend.start(spec, uploads=None)
    env = worker_environ(json.loads((spec.run_dir / rundir.LAUNCH).read_text())["pid"])
    assert env, f"the worker ended at once: {(spec.run_dir / rundir.LOG).read_text()[-2000:]}"
    assert not set(secrets) & set(env), "no key, token, password or unlisted variable"
    assert {k: env.get(k) for k in needed} == needed
    assert env["PATH"] and env["OMP_WAIT_POLICY"] == "PASSIVE"
    assert follow(backend, job)["last"].status == "succeeded"


def test_importing_the_trainer_prints_nothing_about_hub_kernels():
    """bitsandbytes, on CPUs with AVX512-BF16, logs that it could not fetch a kernel ftm never uses."""
    t0 = time.time()
    proc = subprocess.run([sys.executable, "-c", "import ftm_backends.local, peft"], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "kernels" not in proc.stderr and "gemm_4bit_forward" not in proc.stderr, proc.stderr
    assert time.time() - t0 < 120
