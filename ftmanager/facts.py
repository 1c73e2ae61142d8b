"""The domain's facts, each in one place: statuses, metric names, hyperparameters and their
ranges, OpenAI's auto-epochs rule, and how times are written.

Everything that speaks of these (the ledger, jobs, backends, the HTTP front, the data layer)
imports them from here, so a fact changes in one line. Light: nothing here imports anything.
"""

from __future__ import annotations

import calendar
import time

# --- statuses ---------------------------------------------------------------------------
# OpenAI's statuses. Providers may invent others: those are kept verbatim, never rejected.
CREATED = "created"  # ours: written to the ledger, backend not yet confirmed a job
VALIDATING = "validating_files"
QUEUED = "queued"
RUNNING = "running"
PAUSED = "paused"
SUCCEEDED = "succeeded"
FAILED = "failed"
CANCELLED = "cancelled"
KNOWN_STATUSES = (CREATED, VALIDATING, QUEUED, RUNNING, PAUSED, SUCCEEDED, FAILED, CANCELLED)
TERMINAL = frozenset({SUCCEEDED, FAILED, CANCELLED})


def is_terminal(status: str) -> bool:
    return status in TERMINAL


# --- metrics ----------------------------------------------------------------------------
# OpenAI's names everywhere, so hosted and local runs compare column for column.
METRIC_NAMES = (
    "train_loss",
    "train_accuracy",
    "valid_loss",
    "valid_mean_token_accuracy",
    "full_valid_loss",
    "full_valid_mean_token_accuracy",
)

# --- hyperparameters --------------------------------------------------------------------
# The ones every backend takes, in OpenAI's names, each a number or "auto".
HYPERPARAMETERS = ("n_epochs", "batch_size", "learning_rate_multiplier")
# OpenAI's ranges: name -> (type, lowest, highest, lowest excluded). Every backend accepts these.
RANGES = {
    "n_epochs": (int, 1, 50, False),
    "batch_size": (int, 1, 256, False),
    "learning_rate_multiplier": (float, 0, None, True),
    # DPO's beta (OpenAI's range, (0, 2]): how far the tuned model may stray from its reference
    "beta": (float, 0, 2, True),
}


def out_of_range(name: str, number) -> str | None:
    """Why number is not a valid value of hyperparameter name, or None when it is."""
    _kind, low, high, exclusive = RANGES[name]
    if number != number or number in (float("inf"), float("-inf")):
        return f"{name} must be a finite number, not {number}"
    too_low = number <= low if exclusive else number < low
    if too_low or (high is not None and number > high):
        if high is None:
            return f"{name} must be {'above' if exclusive else 'at least'} {low:g}, not {number:g}"
        above = f"above {low:g} and at most" if exclusive else f"between {low:g} and"
        return f"{name} must be {above} {high:g}, not {number:g}"
    return None


# What OpenAI accepts beside them: a model-name suffix of 1..64 characters, a seed that fits
# a signed 32-bit integer, and training files of at least 10 examples.
SUFFIX_MAX = 64
SEED_MAX = 2**31 - 1
MIN_EXAMPLES = 10

# OpenAI's "auto" epochs (cookbook): aim for 100..25,000 example-passes, 3 epochs by default.
TARGET_EPOCHS, MIN_TARGET_EXAMPLES, MAX_TARGET_EXAMPLES = 3, 100, 25_000
MIN_DEFAULT_EPOCHS, MAX_DEFAULT_EPOCHS = 1, 25


def auto_epochs(n_examples: int) -> int:
    """The epochs OpenAI's n_epochs="auto" picks for a training file of n examples (0 for none)."""
    if n_examples <= 0:
        return 0
    if n_examples * TARGET_EPOCHS < MIN_TARGET_EXAMPLES:
        return min(MAX_DEFAULT_EPOCHS, MIN_TARGET_EXAMPLES // n_examples)
    if n_examples * TARGET_EPOCHS > MAX_TARGET_EXAMPLES:
        return max(MIN_DEFAULT_EPOCHS, MAX_TARGET_EXAMPLES // n_examples)
    return TARGET_EPOCHS


# --- time -------------------------------------------------------------------------------
# The ledger writes UTC times as ISO 8601 text, which reads well in Datasette.
TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


def iso(ts: float | None = None) -> str:
    """ts (seconds since the epoch; default now) as the ledger's UTC text."""
    return time.strftime(TIME_FORMAT, time.gmtime(time.time() if ts is None else ts))


def epoch(text: str | None) -> float | None:
    """The ledger's UTC text back as seconds since the epoch (None stays None)."""
    return float(calendar.timegm(time.strptime(text, TIME_FORMAT))) if text else None
