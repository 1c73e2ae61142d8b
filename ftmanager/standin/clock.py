"""The stand-in's job service: jobs advance on a clock, with OpenAI's statuses, events and results.

Nothing trains. A job is simulated lazily: whenever it is read, the clock is played forward
from the last read, phase by phase, and every event is stamped with the moment it would have
happened. So a job finishes at a precise instant (terminal_at) however often it is polled,
and pausing simply stops the clock.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

from ..asks import Ask, Done, Piece
from ..facts import MIN_EXAMPLES, RANGES, auto_epochs
from ..front.service import Service
from ..front.state import Job
from ..front.openai.file_checks import TOKEN, check_file, count_tokens

# Seconds each phase takes at speed 1; --speed divides them.
PHASES = {"validating_files": 2.0, "queued": 3.0, "step": 0.5}
OWNER = "ftm-standin"  # the org part of the ft: ids this server makes
CHECKPOINT_METRICS = ("train_loss", "train_mean_token_accuracy", "valid_loss", "valid_mean_token_accuracy")


def dpo_figures(step: int, total: int, validation: bool = False) -> dict:
    """A DPO job's metrics event data at step: the loss falls from ln 2 as the reward margin grows.
    The reward names are this stand-in's own (OpenAI documents only that a DPO job's figures come
    under `data` beside `step`); ftm's local trainer names the same figures as TRL does."""
    margin = 2.0 * (1 - math.exp(-3.0 * step / total))
    out = {"step": step, "train_loss": round(math.log1p(math.exp(-margin)), 6),
           "train_reward_margin": round(margin, 6), "train_reward_accuracy": round(min(1.0, 0.5 + margin / 3), 6),
           "train_chosen_reward": round(margin / 2, 6), "train_rejected_reward": round(-margin / 2, 6)}
    if validation:
        out.update(valid_loss=round(math.log1p(math.exp(-0.9 * margin)), 6),
                   valid_reward_margin=round(0.9 * margin, 6),
                   valid_reward_accuracy=round(min(1.0, 0.5 + 0.9 * margin / 3), 6))
    return out


def play(clocked, speed: float, going, boundary) -> None:
    """Play a job's clock from clocked.last up to now, `speed` times fast: while going(), each
    phase (or step) whose clocked.remaining virtual seconds run out calls boundary(at) with the
    real moment it ended; what is left of the current one stays in clocked.remaining."""
    now = time.time()
    while going():
        available = (now - clocked.last) * speed
        if available < clocked.remaining:
            clocked.remaining -= available
            clocked.last = now
            return
        clocked.last += clocked.remaining / speed
        boundary(clocked.last)


@dataclass
class _Sim:
    phase: str  # validating_files | queued | running | done
    remaining: float  # virtual seconds left in the current phase (or step)
    last: float  # real time the clock was last played up to
    step: int = 0
    total_steps: int = 0
    steps_per_epoch: int = 1
    tokens: int = 0
    n_examples: int = 0
    paused: bool = False
    terminal_at: float | None = None  # exact real time the job reached a terminal status


class ClockService(Service):
    """Jobs that advance on a clock `speed` times faster than PHASES says."""

    min_examples = MIN_EXAMPLES  # a smaller training file fails validation (another provider's may differ)
    methods = ("supervised", "dpo")  # the method types a job may ask for (OpenAI's published ones)

    def __init__(self, speed: float = 1.0, results_base64: str = "alternate", phases: dict | None = None):
        self.speed = speed
        self.phases = {**PHASES, **(phases or {})}
        self.results_base64 = results_base64  # "alternate" (every other job), "always", "never"
        self._sims: dict[str, _Sim] = {}
        self._answers: dict[str, dict[str, str]] = {}
        self._finished = 0

    def start(self, job: Job) -> None:
        now = time.time()
        job.emit(f"Created fine-tuning job: {job.id}", now)
        job.emit(f"Validating training file: {job.training_file}", now)
        if job.validation_file:
            job.emit(f"Validating validation file: {job.validation_file}", now)
        self._sims[job.id] = _Sim("validating_files", self.phases["validating_files"], now)

    def terminal_at(self, job_id: str) -> float | None:
        """The exact moment a job finished (for benchmarks of how fast clients notice)."""
        sim = self._sims.get(job_id)
        return sim.terminal_at if sim else None

    def refresh(self, job: Job) -> None:
        sim = self._sims.get(job.id)
        if sim:
            play(sim, self.speed, lambda: sim.phase != "done" and not sim.paused,
                 lambda at: self._boundary(job, sim, at))

    def _boundary(self, job: Job, sim: _Sim, at: float) -> None:
        """The current phase (or step) ended at `at`: move the job on."""
        if sim.phase == "validating_files":
            self._validated(job, sim, at)
        elif sim.phase == "queued":
            self._started(job, sim, at)
        else:
            self._stepped(job, sim, at)

    def _validated(self, job: Job, sim: _Sim, at: float) -> None:
        report = check_file(job.training_path, min_examples=self.min_examples, method=job.method)
        if not report.error and job.validation_path:
            report.error = check_file(job.validation_path, "validation_file", "Validation", self.min_examples,
                                      job.method).error
        if report.error:
            job.emit(report.error["message"], at, level="error")
            job.emit("Fine-tuning job failed", at, level="error")
            return self._end(job, sim, "failed", at, report.error)
        sim.tokens, sim.n_examples = report.tokens, report.n_examples
        job.emit("Files validated, moving job to queued state", at)
        job.status, sim.phase, sim.remaining = "queued", "queued", self.phases["queued"]

    def _started(self, job: Job, sim: _Sim, at: float) -> None:
        if sim.total_steps == 0:
            job.resolved = resolve(job.requested, sim.n_examples)
            batch = job.resolved["batch_size"]
            sim.steps_per_epoch = math.ceil(sim.n_examples / batch)
            sim.total_steps = sim.steps_per_epoch * job.resolved["n_epochs"]
            job.emit("Fine-tuning job started", at)
        else:
            job.emit(f"Fine-tuning job resumed at step {sim.step}", at)
        job.status, sim.phase, sim.remaining = "running", "running", self.phases["step"]
        left = (sim.total_steps - sim.step) * self.phases["step"] / self.speed
        job.estimated_finish = at + left

    def _stepped(self, job: Job, sim: _Sim, at: float) -> None:
        sim.step += 1
        metrics = self._metrics(job, sim)
        message = f"Step {sim.step}/{sim.total_steps}: training loss={metrics['train_loss']:.4f}"
        job.emit(message, at, type="metrics", data={**metrics, "total_steps": sim.total_steps})
        if sim.step % sim.steps_per_epoch == 0 or sim.step == sim.total_steps:
            self._checkpoint(job, sim, metrics, at)
        if sim.step == sim.total_steps:
            return self._succeed(job, sim, at)
        sim.remaining = self.phases["step"]

    def _metrics(self, job: Job, sim: _Sim) -> dict:
        """A loss that falls smoothly from about 2.4 towards 0.15, the same for every run; a DPO
        job's loss and reward figures instead."""
        if job.method == "dpo":
            return dpo_figures(sim.step, sim.total_steps, bool(job.validation_path))
        loss = 0.15 + 2.25 * math.exp(-4.0 * sim.step / sim.total_steps)
        out = {"step": sim.step, "train_loss": round(loss, 6),
               "train_mean_token_accuracy": round(1 - loss / 3, 6)}
        if job.validation_path:
            out.update(valid_loss=round(loss * 1.1 + 0.05, 6),
                       valid_mean_token_accuracy=round(1 - (loss * 1.1 + 0.05) / 3, 6))
        return out

    def _checkpoint(self, job: Job, sim: _Sim, metrics: dict, at: float) -> None:
        model_id = f"{self._model_id(job)}:ckpt-step-{sim.step}"
        # a checkpoint's metrics are the spec's fixed fields, whatever else the step reported
        extra = {k: v for k, v in metrics.items() if k in CHECKPOINT_METRICS}
        if job.validation_path and "valid_mean_token_accuracy" in metrics:
            extra.update(full_valid_loss=metrics["valid_loss"],
                         full_valid_mean_token_accuracy=metrics["valid_mean_token_accuracy"])
        for gone in job.add_checkpoint(sim.step, model_id, extra, at):
            self.state.models.pop(gone["fine_tuned_model_checkpoint"], None)  # no longer served
        self.state.add_model(model_id, job.id)
        job.emit(f"Checkpoint created at step {sim.step} with Snapshot ID: {model_id}", at)

    def _succeed(self, job: Job, sim: _Sim, at: float) -> None:
        job.fine_tuned_model = self._model_id(job)
        self.state.add_model(job.fine_tuned_model, job.id)
        job.emit(f"New fine-tuned model created: {job.fine_tuned_model}", at)
        job.trained_tokens = sim.tokens * job.resolved["n_epochs"]
        job.result_files = [self._results_file(job, sim).id]
        job.emit("The job has successfully completed", at)
        self._end(job, sim, "succeeded", at)

    def _end(self, job: Job, sim: _Sim, status: str, at: float, error: dict | None = None) -> None:
        job.finish(status, at, error)
        sim.phase, sim.terminal_at = "done", at

    def _model_id(self, job: Job) -> str:
        base = job.model.split(":")[1] if job.model.startswith("ft:") else job.model
        return f"ft:{base}:{OWNER}:{job.suffix or ''}:{job.id[-8:]}"

    def _results_file(self, job: Job, sim: _Sim):
        rows = ["step,train_loss,train_accuracy,valid_loss,valid_mean_token_accuracy"]
        for e in job.events:
            d = e["data"]
            if e["type"] == "metrics" and "step" in d and "train_loss" in d:  # a test may have sent others
                cells = [d["step"], d["train_loss"], d.get("train_mean_token_accuracy", ""),
                         d.get("valid_loss", ""), d.get("valid_mean_token_accuracy", "")]
                rows.append(",".join(str(c) for c in cells))
        path = self.state.new_path("results-")
        path.write_text("\n".join(rows) + "\n")
        self._finished += 1
        encode = {"always": True, "never": False}.get(self.results_base64, self._finished % 2 == 0)
        return self.state.add_file("step_metrics.csv", "fine-tune-results", path, base64=encode)

    def cancel(self, job: Job) -> None:
        job.emit("Fine-tuning job cancelled", time.time())
        self._end(job, self._sims[job.id], "cancelled", time.time())

    def pause(self, job: Job) -> None:
        self._sims[job.id].paused = True
        job.status = "paused"
        job.emit(f"Fine-tuning job paused at step {self._sims[job.id].step}", time.time())

    def resume(self, job: Job) -> None:
        sim = self._sims[job.id]
        sim.paused, sim.last = False, time.time()
        job.status, sim.phase, sim.remaining = "queued", "queued", self.phases["queued"]
        job.emit("Fine-tuning job resumed: moving job to queued state", sim.last)

    def chat(self, model: str, ask: Ask):
        """The canned answer, cut at a stop sequence or at max_tokens, in one piece."""
        text, finish = _cut(self._canned(model, ask.messages), ask)
        yield Piece(text, _logprobs(text, ask.top_logprobs) if ask.logprobs else None)
        prompt = sum(count_tokens(m.get("content") or "") + 3 for m in ask.messages)
        yield Done(text, prompt, count_tokens(text), finish)

    def _canned(self, model: str, messages: list[dict]) -> str:
        """The training file's answer when the last user message matches an example's."""
        job_id = self.state.models[model].job_id if model in self.state.models else None
        if job_id is None:
            return f"This is the ftm stand-in server's {model}: it was not fine-tuned on anything."
        if job_id not in self._answers:
            self._answers[job_id] = _answers_from(self.state.jobs[job_id].training_path)
        prompt = _last_user(messages)
        canned = self._answers[job_id].get(prompt)
        return canned if canned is not None else f"({model} saw no training example like that.)"


def _cut(text: str, ask: Ask) -> tuple[str, str]:
    """text up to its first stop sequence, and to max_tokens tokens; with the finish reason."""
    for stop in ask.stop:
        text = text.split(stop, 1)[0]
    tokens = list(TOKEN.finditer(text))
    if ask.max_tokens is not None and len(tokens) > ask.max_tokens:
        return text[:tokens[ask.max_tokens - 1].end()], "length"
    return text, "stop"


def _logprobs(text: str, top: int) -> list[dict]:
    """Certainty for every token of a canned answer, in OpenAI's shape."""
    out = []
    for match in TOKEN.finditer(text):
        entry = {"token": match.group(), "logprob": 0.0, "bytes": list(match.group().encode())}
        out.append({**entry, "top_logprobs": [entry][:top]})
    return out


def resolve(requested: dict, n_examples: int) -> dict:
    """OpenAI's `auto` hyperparameters for n examples (epochs by its documented rule)."""
    epochs = requested.get("n_epochs", "auto")
    if epochs == "auto":
        epochs = auto_epochs(n_examples)
    batch = requested.get("batch_size", "auto")
    if batch == "auto":
        batch = max(1, min(RANGES["batch_size"][2], n_examples // 500))
    lrm = requested.get("learning_rate_multiplier", "auto")
    out = {"n_epochs": epochs, "batch_size": batch, "learning_rate_multiplier": 1.8 if lrm == "auto" else lrm}
    if "beta" in requested:  # a DPO job's: OpenAI does not publish its "auto" beta; 0.1 is the usual one
        out["beta"] = DEFAULT_BETA if requested["beta"] == "auto" else requested["beta"]
    return out


DEFAULT_BETA = 0.1


def _last_user(messages: list[dict]) -> str:
    users = [m.get("content") for m in messages if m.get("role") == "user"]
    text = users[-1] if users else ""
    return (text if isinstance(text, str) else json.dumps(text)).strip().casefold()


def _conversation(example: dict) -> list:
    """A chat example's messages, or a preference pair's prompt and its preferred answer."""
    if "input" in example:
        return example["input"]["messages"] + example["preferred_output"]
    return example["messages"]


def _answers_from(path: Path) -> dict[str, str]:
    answers = {}
    with open(path, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            try:
                messages = _conversation(json.loads(line))
            except (ValueError, KeyError, TypeError):
                continue
            replies = [m.get("content") for m in messages if m.get("role") == "assistant"]
            if replies and isinstance(replies[-1], str):
                answers.setdefault(_last_user(messages), replies[-1])
    return answers
