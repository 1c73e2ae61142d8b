"""A hostile or careless user at `ftm submit --method dpo`: the wrong kind of data either way (the
validation set too), beta out of range, a backend with no DPO, pairs with fields missing, DPO
settings on a supervised run. Each is one line, exit 1, and nothing is uploaded or recorded."""

from __future__ import annotations

import json

import pytest
from conftest import ftm
from sdk_backends import aimed, preferences, served

from ftmanager.standin import standin

KEY = "sk-test-" + "d00r" * 6
server = served(standin, speed=40)


@pytest.fixture
def env(server, monkeypatch, ftm_home):
    return aimed(server, monkeypatch, {"OPENAI_BASE_URL": server.url, "OPENAI_API_KEY": KEY},
                 unset=("OPENAI_ORG_ID", "OPENAI_PROJECT_ID", "FTM_POLL_SCALE"))


@pytest.fixture
def prefs(tmp_path):
    return preferences(tmp_path / "prefs.jsonl")


def refused(env, *args) -> str:
    """The one-line error of a submit that must leave no upload, no job and no run behind."""
    result = ftm("submit", *args)
    assert result.code == 1, result
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and "Traceback" not in result.err, result
    assert env.requests[("POST", "/files")] == 0 and env.requests[("POST", "/fine_tuning/jobs")] == 0
    assert ftm("runs", "--json").json() == []
    return lines[0]


def test_a_preference_file_to_a_supervised_run_is_refused(env, prefs):
    line = refused(env, prefs, "-b", "openai")
    assert "holds preference pairs" in line and "a supervised run needs chat examples" in line
    assert "Use --method dpo" in line


def test_a_chat_file_to_a_dpo_run_is_refused(env, chat_file):
    line = refused(env, chat_file, "-b", "openai", "--method", "dpo")
    assert "a DPO run needs preference pairs" in line


def test_a_validation_set_of_the_other_kind_is_refused(env, prefs, chat_file):
    line = refused(env, prefs, "-b", "openai", "--method", "dpo", "--validation", chat_file)
    assert "a DPO run's validation set needs preference pairs" in line
    line = refused(env, chat_file, "-b", "openai", "--validation", prefs)
    assert "a supervised run's validation set needs chat examples" in line


@pytest.mark.parametrize("beta, said", [("0", "beta must be above 0 and at most 2, not 0"),
                                        ("-0.5", "beta must be above 0 and at most 2, not -0.5"),
                                        ("nan", "beta must be a finite number, not nan"),
                                        ("inf", "beta must be a finite number, not inf"),
                                        ("3", "beta must be above 0 and at most 2, not 3"),
                                        ("lots", "beta must be a number or 'auto', not 'lots'")])
def test_beta_out_of_range_is_one_line(env, prefs, beta, said):
    assert said in refused(env, prefs, "-b", "openai", "--method", "dpo", "--beta", beta)


def test_beta_by_p_is_checked_the_same_way(env, prefs):
    assert "beta must be above 0 and at most 2, not 7" in refused(env, prefs, "-b", "openai", "--method", "dpo", "-p", "beta=7")


def test_beta_without_dpo_says_to_add_the_method(env, chat_file):
    line = refused(env, chat_file, "-b", "openai", "--beta", "0.1")
    assert "the supervised method takes no beta" in line and "Add --method dpo" in line


def test_an_unknown_method_is_one_line(env, prefs):
    assert "unknown training method 'ppo'" in refused(env, prefs, "-b", "openai", "--method", "ppo")


def test_a_backend_without_dpo_refuses_before_anything(env, prefs):
    line = refused(env, prefs, "-b", "fake-sft", "--method", "dpo")  # the test plugin's supervised-only provider
    assert "the fake-sft backend has no dpo training" in line
    assert "Use a backend that has it: " in line and all(b in line for b in ("openai", "together", "fireworks"))


@pytest.mark.parametrize("broken, said", [
    (lambda r: r.pop("non_preferred_output"), "non_preferred_output"),
    (lambda r: r.pop("preferred_output"), "preferred_output"),
    (lambda r: r["preferred_output"].append({"role": "assistant", "content": "and more"}), "preferred_output"),
    (lambda r: r.update(non_preferred_output=r["preferred_output"]), "are the same"),
])
def test_a_pair_with_a_field_missing_or_wrong_is_refused_by_line(env, tmp_path, broken, said):
    path = preferences(tmp_path / "broken.jsonl")
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    broken(rows[3])
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    line = refused(env, path, "-b", "openai", "--method", "dpo")
    assert said in line and "broken.jsonl:4:" in line
