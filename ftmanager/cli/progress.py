"""The progress display of `ftm watch` and `ftm submit --wait`, written to stderr."""

from __future__ import annotations

import sys
import time


def _clock(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


class Printer:
    """Prints each new event as a line; on a terminal, keeps a live status line below them."""

    def __init__(self, quiet: bool = False, stream=None):
        self.stream = stream or sys.stderr
        self.live = self.stream.isatty() and not quiet
        self.quiet = quiet
        self.step, self.loss, self.status = None, None, None

    def update(self, run: dict, progress) -> None:
        if self.quiet:
            return
        self._clear()
        for event in progress.events if progress else []:
            if self._shown(event, run):
                stamp = time.strftime("%H:%M:%S", time.localtime(event.created_at))
                self.stream.write(f"{stamp}  {event.message}\n")
        for m in progress.metrics if progress else []:
            self.step, self.loss = m.get("step"), m.get("train_loss", self.loss)
        if run["status"] != self.status and not self.live:
            self.stream.write(f"status: {run['status']}\n")
        self.status = run["status"]
        if self.live:
            self.stream.write(self._line(run, progress))
        self.stream.flush()

    def _shown(self, event, run: dict) -> bool:
        """Every message; of the per-step metrics events, about one in ten (and the last).

        On a terminal the live line carries each step's loss, so no metrics event is printed.
        """
        if event.type != "metrics":
            return True
        if self.live:
            return False
        data = event.data or {}
        step, total = data.get("step"), data.get("total_steps") or run.get("total_steps")
        if not isinstance(step, int) or not isinstance(total, int) or total <= 0:
            return True
        return step % max(1, total // 10) == 0 or step == total

    def _line(self, run: dict, progress) -> str:
        total = run.get("total_steps")
        parts = [run["id"], run["status"]]
        if self.step is not None:
            parts.append(f"step {self.step}/{total or '?'}")
            if total:
                done = int(20 * min(1.0, self.step / total))
                parts.append("[" + "#" * done + "." * (20 - done) + "]")
        if self.loss is not None:
            parts.append(f"loss {self.loss:.4f}")
        if progress and progress.eta_seconds is not None:
            parts.append(f"eta {_clock(progress.eta_seconds)}")
        return "  ".join(parts)

    def _clear(self) -> None:
        if self.live:
            self.stream.write("\r\033[K")

    def done(self, run: dict) -> None:
        """Close the live line and say how the run ended."""
        self._clear()
        line = f"{run['id']} {run['status']}"
        if run.get("result_model"):
            line += f": {run['result_model']}"
        if run.get("error_message"):
            line += f": {run.get('error_code') or 'error'}: {run['error_message']}"
        if not self.quiet:
            self.stream.write(line + "\n")
