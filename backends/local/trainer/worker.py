"""The detached worker: `python -m ftm_backends.local.trainer.worker RUN_DIR [--resume]`.

Started by LocalBackend.start() in its own session, or by `accelerate launch` once per
process when gpus > 1. Everything it needs is in RUN_DIR/spec.json; it never opens the ledger.
"""

from __future__ import annotations

import os
import sys
import threading
import traceback
from pathlib import Path

from . import rundir


def heartbeat(run_dir: Path, stop: threading.Event) -> None:
    """Prove to poll() that the worker lives, even through a long model load."""
    while not stop.wait(rundir.HEARTBEAT_EVERY):
        rundir.append(run_dir, "heartbeat")


def setup_distributed(device: str) -> tuple[int, int, str]:
    """Rank, world size and this rank's device (torchrun/accelerate set the env vars)."""
    import torch

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return 0, 1, device
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if device.startswith("cuda"):
        torch.cuda.set_device(local)
        device = f"cuda:{local}"
    torch.distributed.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    return torch.distributed.get_rank(), world, device


def main(argv: list[str]) -> int:
    run_dir, resume = Path(argv[0]), "--resume" in argv
    rank = int(os.environ.get("RANK", "0"))
    stop = threading.Event()
    if rank == 0:
        rundir.append(run_dir, "status", status="running", pid=os.getpid())
        threading.Thread(target=heartbeat, args=(run_dir, stop), daemon=True).start()
    try:
        return run(run_dir, resume)
    except BaseException as exc:  # noqa: BLE001 - every failure must reach the progress file
        traceback.print_exc()
        if rank == 0:
            # what the user can do about it too (an FtmError's line), else the exception itself
            message = exc.line() if hasattr(exc, "line") else f"{type(exc).__name__}: {exc}"
            rundir.append(run_dir, "status", status="failed",
                            error={"code": "training_error", "message": message})
        return 1
    finally:
        stop.set()


def run(run_dir: Path, resume: bool) -> int:
    from ..modeling import loading as models
    from .train import Cancelled, Run, train

    probe = Run(run_dir)
    rank, world, device = setup_distributed(models.pick_device(probe.opts["device"]))
    run = Run(run_dir, rank, world, device)
    try:
        train(run, resume)
    except Cancelled as stopped:
        run.event(f"Fine-tuning cancelled at step {stopped.args[0]}; checkpoint saved")
        run.report("status", status="cancelled")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
