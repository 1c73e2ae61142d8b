"""`ftm datasets validate --provider together|fireworks`: the provider's own data rules, by line.

Together's verdict is checked against Together's own file check (the `together` SDK 2.0.0's
check_file, kept in tests/peers/): for each kind of example, ftm refuses exactly what it refuses.
"""

from __future__ import annotations

import json

import pytest
from conftest import ftm

U, A, S = "user", "assistant", "system"


def turns(*roles, weight=None) -> dict:
    messages = [{"role": r, "content": f"{r} says {i}"} for i, r in enumerate(roles)]
    if weight is not None:
        messages[-1]["weight"] = weight
    return {"messages": messages}


CASES = {
    "plain": turns(U, A),
    "multi-turn": turns(S, U, A, U, A),
    "assistant first": turns(A, U, A),
    "system late": turns(U, A, S, U, A),
    "weight 0 on the reply": turns(U, A, U, A, weight=0),
    "two user turns in a row": turns(U, U, A),
    "two assistant turns in a row": turns(U, A, A),
}


@pytest.mark.parametrize("case", CASES)
def test_ftm_refuses_what_togethers_own_check_refuses(case, tmp_path, ftm_home):
    from peers import together_files  # Together's check_file, from its SDK on PyPI (tests/peers)

    path = tmp_path / "one.jsonl"
    path.write_text(json.dumps(CASES[case]) + "\n")
    theirs = together_files.check_file(path)["is_check_passed"]
    ours = ftm("datasets", "validate", path, "--provider", "together", "--json")
    assert (ours.code == 0) == theirs, (case, ours.out[-600:])
    if not theirs:
        codes = {p["code"] for p in ours.json()["errors"]}
        assert codes == {"provider_rule"}, codes


def test_fireworks_rules_and_its_minimum(tmp_path, ftm_home):
    path = tmp_path / "two.jsonl"
    path.write_text("".join(json.dumps(turns(U, A)) + "\n" for _ in range(2)))
    few = ftm("datasets", "validate", path, "--provider", "fireworks", "--json")
    assert few.code == 1
    assert [p["message"] for p in few.json()["errors"]] == [
        "2 example(s); accounts/fireworks/models/llama-v3p1-8b-instruct needs at least 3"]  # said once
    assert ftm("datasets", "validate", path, "--provider", "fireworks", "--model", "acme/other").code == 1
    assert ftm("datasets", "validate", path, "--provider", "together").code == 0  # Together takes one
    path.write_text("".join(json.dumps(turns(U, A)) + "\n" for _ in range(3)))
    assert ftm("datasets", "validate", path, "--provider", "fireworks").code == 0


def test_an_unknown_provider_is_one_line(tmp_path, ftm_home):
    path = tmp_path / "one.jsonl"
    path.write_text(json.dumps(turns(U, A)) + "\n")
    result = ftm("datasets", "validate", path, "--provider", "mistral")
    assert result.code == 1 and result.err.strip() == (
        "Error: ftm knows no data rules for 'mistral'. Choose one of: fireworks, together.")
