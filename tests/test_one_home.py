"""Each fact has one home: the literals below are written in theirs and nowhere else in the
library or the backends, so a fact changes in one line (and two copies cannot drift apart)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SOURCES = sorted([*ROOT.glob("ftmanager/**/*.py"), *ROOT.glob("backends/**/*.py")])

# what must not be written again -> the one file allowed to write it
FACTS = {
    "a hyperparameter's range": (r'"(n_epochs|batch_size|learning_rate_multiplier)"\s*:\s*\(\(?\s*(int|float)'
                                 r'|\b(1 ?- ?50|1 and 50)\b|batch_size\W[^\n]{0,40}\b256\b', "ftmanager/facts.py"),
    "the largest seed": (r"2147483647|2\s*\*\*\s*31", "ftmanager/facts.py"),
    "the suffix's length": (r"suffix[^\n]{0,80}\b64\b", "ftmanager/facts.py"),
    "OpenAI's auto-epochs bounds": (r"\b25_?000\b", "ftmanager/facts.py"),
    "the 10-example minimum": (r"(?i)(at least|fewer than|minimum of)\s+10\b|min_examples\b[^\n=]*=[^\n]*\b10\b",
                               "ftmanager/facts.py"),
    "ROUGE-L's longest common subsequence": (r"(?i)\blcs\b|\[j\]\s*\+\s*1\s+if\b", None),
    "where FTM_HOME is": (r"user_data_dir\(", "ftmanager/paths.py"),
    "reading a user-extended table": (r"tomllib\.load", "ftmanager/tables.py"),
}


def _hits(pattern: str, home: str | None) -> list[str]:
    found = []
    for path in SOURCES:
        where = path.relative_to(ROOT).as_posix()
        if where == home:
            continue
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if re.search(pattern, line):
                found.append(f"{where}:{n}: {line.strip()}")
    return found


@pytest.mark.parametrize("fact", FACTS)
def test_a_fact_is_written_only_in_its_home(fact):
    pattern, home = FACTS[fact]
    assert not _hits(pattern, home), f"{fact} is written outside {home or 'rouge-score'}: import it from there"


@pytest.mark.parametrize("fact", [f for f, (_, home) in FACTS.items() if home])
def test_each_home_still_holds_its_fact(fact):
    """The scan above only means something while the pattern matches the fact where it lives."""
    pattern, home = FACTS[fact]
    text = (ROOT / home).read_text(encoding="utf-8")
    assert re.search(pattern, text, re.MULTILINE), f"{home} no longer writes {fact}: update this test's pattern"


def test_hyperparameters_are_one_typed_record_from_the_ledger_to_the_backend():
    from ftmanager.backend import RunSpec
    from ftmanager.errors import InvalidInput
    from ftmanager.hyperparameters import Hyperparameters

    stored = {"n_epochs": 3, "batch_size": "auto", "learning_rate_multiplier": 2.0}  # the ledger's JSON
    assert Hyperparameters.of({"n_epochs": "3", "learning_rate_multiplier": 2}).to_dict() == stored
    spec = RunSpec(run_id="r", base_model="m", training_file=Path("x"), dataset_id="d", n_examples=40,
                   run_dir=Path("."), hyperparameters=stored)
    assert spec.hyperparameters.n_epochs == 3 and not spec.hyperparameters.asked("batch_size")
    assert spec.hyperparameters.resolved(n_epochs=9, batch_size=4) == {**stored, "batch_size": 4}
    assert spec.hyperparameters.learning_rate(1e-4) == pytest.approx(2e-4)
    with pytest.raises(InvalidInput, match="n_epochs must be between 1 and 50, not 51"):
        Hyperparameters(n_epochs=51)
    with pytest.raises(InvalidInput, match="unknown training method 'ppo'"):
        Hyperparameters.of({"method": "ppo"})
