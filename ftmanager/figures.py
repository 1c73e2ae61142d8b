"""A run's figures beyond the fixed metric columns (DPO's rewards/margins, a provider's own names):
which names and values the ledger keeps. Providers name these themselves, so a hostile or broken
one must not be able to crash a sync, flood the ledger or smuggle markup into the dashboard."""

from __future__ import annotations

import math
import re

from .facts import METRIC_NAMES

# Letters, digits and _ . / : - (TRL's rewards/margins, OpenAI's train_mean_reward): a name that
# needs anything else (spaces, quotes, <tags>) is skipped rather than escaped into every output.
NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_./:-]{0,63}")
PER_STEP = 64  # figures kept from one step's report; a report with more keeps the first 64 by name
SHOWN = 32  # names a run's summary, page or curves read at most
NOT_FIGURES = frozenset({"step", "total_steps", "run_id", *METRIC_NAMES})
# DPO's figures as the local trainer writes them (TRL's names): shown first, in this order
DPO_ORDER = ("rewards/margins", "rewards/accuracies", "rewards/chosen", "rewards/rejected",
             "logps/chosen", "logps/rejected", "valid_rewards/margins", "valid_rewards/accuracies")


def number(value) -> float | None:
    """value as a finite float, or None: strings, booleans, NaN, inf and overflowing ints are not figures."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        out = float(value)
    except OverflowError:
        return None
    return out if math.isfinite(out) else None


def is_name(name) -> bool:
    """Whether name may be a figure's name (and so a curve's)."""
    return isinstance(name, str) and NAME.fullmatch(name) is not None


def extra(metrics: dict) -> list[tuple[str, float]]:
    """The (name, value) figures of one step's report beyond the fixed columns, safe to keep."""
    kept = []
    for name in sorted(k for k in metrics if is_name(k) and k not in NOT_FIGURES):
        value = number(metrics[name])
        if value is not None:
            kept.append((name, value))
        if len(kept) == PER_STEP:
            break
    return kept


def ordered(names) -> list[str]:
    """Figure names as people read them: DPO's in DPO_ORDER first, then the rest by name."""
    rank = {name: i for i, name in enumerate(DPO_ORDER)}
    return sorted(names, key=lambda n: (rank.get(n, len(rank)), n))
