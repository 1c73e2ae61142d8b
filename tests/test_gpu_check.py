"""bench/gpu_check.py --smoke: the GPU check's every part, on a CPU with a tiny model, so the
script a borrowed GPU machine runs in one go has run here first."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_smoke_trains_resumes_generates_serves_and_writes_its_figures(tmp_path):
    env = {**os.environ, "OUT": str(tmp_path), "OMP_WAIT_POLICY": "PASSIVE"}
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "gpu_check.py"), "--smoke"], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    figures = json.loads((tmp_path / "gpu_check.json").read_text())

    assert figures["checks"] and all(figures["checks"].values()), figures["checks"]
    assert "ftm-lora resumed at step 2" in figures["checks"]
    assert figures["matmul_peak_flops"] > 0
    for name in ("ftm-qlora", "ftm-lora", "ftm-full", "trl-sft-lora"):
        run = figures["train"][name]
        assert run["tokens_per_s"] > 0 and 0 < run["mfu"] < 1, (name, run)
        assert "peak_gpu_memory_gb" in run  # None on a CPU
    lora = figures["train"]["ftm-lora"]
    assert lora["resumed_event"] == "Resumed from checkpoint at step 1/6"
    assert lora["loss_last"] < lora["loss_first"]
    assert set(figures["serve"]) == {"pool", "generate", "padded_batch"}
    assert all(r["requests_per_s"] > 0 and r["new_tokens_per_s"] > 0 for r in figures["serve"].values())
    assert "checks: " in proc.stdout and "MFU" in proc.stdout
