"""Checkpoints: the weights with the trainer's state beside them (optimizer, scheduler, RNG, the
best validation loss so far), written aside then renamed into place, so a run paused, cancelled
or killed resumes from the last complete one at the very batch it would have trained next.
"""

from __future__ import annotations

import pickle
import random
import shutil
from pathlib import Path

import torch

from ftmanager.errors import InvalidInput


class Best:
    """The lowest validation loss so far and its step: the model keep=best keeps, and what
    early stopping (early_stopping=N evaluations without a lower loss) watches."""

    def __init__(self, opts: dict, step: int | None = None, loss: float | None = None, since: int = 0):
        self.keep, self.patience = opts["keep"], opts["early_stopping"]
        self.step, self.loss, self.since = step, loss, since  # since: evaluations since the best

    def saw(self, step: int, loss: float) -> None:
        if self.loss is None or loss < self.loss:
            self.step, self.loss, self.since = step, loss, 0
        else:
            self.since += 1

    def keeps(self, step: int) -> bool:
        """Whether step's weights must be saved: keep=best and step has the lowest loss yet."""
        return self.keep == "best" and self.step == step

    def out_of_patience(self) -> bool:
        return bool(self.patience) and self.since >= self.patience

    def state(self) -> dict:
        return {"step": self.step, "loss": self.loss, "since": self.since}

    def __str__(self) -> str:
        return (f"the validation loss has not gone below {self.loss:.4f} (step {self.step}) "
                f"in {self.since} evaluations")


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The newest complete checkpoint (renamed into place, with its trainer state)."""
    done = [p for p in (Path(run_dir) / "checkpoints").glob("step-*") if (p / "state.pt").exists()]
    return max(done, key=lambda p: int(p.name.split("-")[1]), default=None)


def save_checkpoint(root: Path, name: str, save, opt, sched, step: int, best: Best) -> Path:
    """The weights (save() into root/step-N/name) + optimizer, scheduler, RNG state and the
    best validation loss so far, written aside then renamed into place."""
    final, tmp = root / f"step-{step}", root / f".tmp-step-{step}"
    shutil.rmtree(tmp, ignore_errors=True)
    save(tmp / name)
    state = {"step": step, "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
             "torch_rng": torch.get_rng_state(), "python_rng": random.getstate(), "best": best.state()}
    if torch.cuda.is_available():
        state["cuda_rng"] = torch.cuda.get_rng_state_all()
    torch.save(state, tmp / "state.pt")
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)
    for old in root.glob("step-*"):  # only the newest needs optimizer state to resume
        if old != final and (old / "state.pt").exists():
            (old / "state.pt").unlink()
    return final


def restore(ckpt: Path, opt, sched, opts: dict) -> tuple[int, Best]:
    """Load a checkpoint's optimizer, scheduler and RNG state; the step it was taken at, and
    the best validation loss until then."""
    try:  # tensors, numbers and containers only: a crafted pickle in a shared FTM_HOME runs no code
        state = torch.load(ckpt / "state.pt", weights_only=True)
    except pickle.UnpicklingError:
        raise InvalidInput(f"the checkpoint {ckpt / 'state.pt'} holds more than tensors and numbers, "
                           f"so it was not loaded", "Delete that checkpoint folder to resume from an earlier "
                           "one, or re-run the run.") from None
    opt.load_state_dict(state["optimizer"])
    sched.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["torch_rng"])
    random.setstate(state["python_rng"])
    if "cuda_rng" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda_rng"])
    return state["step"], Best(opts, **state.get("best", {}))
