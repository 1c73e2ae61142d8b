"""How the detached worker is started: its command line and the environment it may see.

Light: no torch here.
"""

from __future__ import annotations

import os
import socket
import subprocess
import threading
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

from . import rundir

# What a worker may see of the caller's environment: what Python, torch, OpenMP, CUDA and the
# Hugging Face libraries read, and FTM_HOME. Anything named like a key, token or password stays
# out even when a prefix matches (HF_TOKEN too: `hf auth login` keeps the token on disk, where
# the hub library finds it without the environment).
KEEP = {"PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LANGUAGE", "TZ", "TMPDIR", "TEMP", "TMP",
        "VIRTUAL_ENV", "LD_LIBRARY_PATH", "XDG_CACHE_HOME", "XDG_DATA_HOME", "XDG_CONFIG_HOME", "FTM_HOME",
        "SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "HF_HOME",
        "TOKENIZERS_PARALLELISM", "TRANSFORMERS_OFFLINE", "TRANSFORMERS_CACHE", "HF_DATASETS_OFFLINE"}
KEEP_PREFIXES = ("LC_", "PYTHON", "OMP_", "KMP_", "GOMP_", "MKL_", "OPENBLAS_", "ONEDNN_", "DNNL_", "ATEN_",
                 "TORCH", "PYTORCH_", "CUDA_", "NCCL_", "NVIDIA_", "HIP_", "ROCR_", "HSA_", "BNB_",
                 "ACCELERATE_", "HF_HUB_")
PROXIES = {"HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"}  # kept unless they carry a password
SECRET_WORDS = ("KEY", "TOKEN", "SECRET", "PASSWORD", "PASSWD", "CREDENTIAL", "AUTH")


def worker_environment(environ: dict[str, str]) -> dict[str, str]:
    """The allow-listed part of environ that a worker is started with."""
    env = {}
    for name, value in environ.items():
        upper = name.upper()
        allowed = upper in KEEP or upper.startswith(KEEP_PREFIXES) or upper in PROXIES
        if allowed and not any(word in upper for word in SECRET_WORDS) and not _has_password(upper, value):
            env[name] = value
    # OpenMP threads that spin while waiting make CPU training ~10x slower on a shared,
    # oversubscribed machine (measured on 2 cores); passive waiting costs ~nothing alone.
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    return env


def _has_password(name: str, value: str) -> bool:
    return name in PROXIES and "@" in urlsplit(value if "://" in value else f"//{value}").netloc


def start_worker(run_dir: Path, gpus: int, resume: bool) -> None:
    """Launch the worker in its own session, logging to the run dir, and record its pid."""
    with open(run_dir / rundir.LOG, "ab") as log:
        proc = subprocess.Popen(worker_command(run_dir, gpus, resume), stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, cwd=run_dir, env=worker_environment(dict(os.environ)),
                                start_new_session=True)
    rundir.write_launch(run_dir, proc.pid)
    # a long-lived launcher (ftm serve) collects the exit the moment the worker ends, so no
    # <defunct> worker waits for some later read to reap it; a CLI process exits before this matters
    threading.Thread(target=proc.wait, name=f"reap-{proc.pid}", daemon=True).start()


def worker_command(run_dir: Path, gpus: int, resume: bool) -> list[str]:
    """The worker's command line: plain python, or accelerate launch for gpus > 1 (DDP)."""
    tail = ["ftm_backends.local.trainer.worker", str(run_dir)] + (["--resume"] if resume else [])
    if gpus <= 1:
        return [sys.executable, "-m", *tail]
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", str(gpus),
              "--num_machines", "1", "--main_process_port", str(free_port()), "--multi_gpu",
              "--mixed_precision", "no", "--dynamo_backend", "no"]
    # --multi_gpu is accelerate's torchrun path even on CPU (its --cpu flag means one process
    # or MPI); the worker picks gloo or nccl from its device.
    return launch + ["-m", *tail]


def wait_gone(run_dir: Path, seconds: float) -> bool:
    """Has the worker exited (waiting up to seconds: a finished one is still saving)?"""
    deadline = time.time() + seconds
    while rundir.worker_gone(run_dir) is None:
        if time.time() >= deadline:
            return False
        time.sleep(0.2)
    return True


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
