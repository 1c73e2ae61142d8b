"""A hostile user at local DPO's doors: bad pairs, the wrong kind of data for the method, beta
out of range, unknown loss settings. Each is one line, exit 1, no traceback, and no run recorded."""

from __future__ import annotations

import pytest
from conftest import ftm

from fixtures_local import tiny_llama, write_jsonl  # noqa: F401  (fixture)

pytest.importorskip("peft")

PAIR = {"input": {"messages": [{"role": "user", "content": "hi"}]},
        "preferred_output": [{"role": "assistant", "content": "zz"}],
        "non_preferred_output": [{"role": "assistant", "content": "qq"}]}
CHAT = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "zz"}]}


def rows(kind: str) -> list[dict]:
    """Ten rows of one kind, each a different prompt."""
    if kind == "chat":
        return [{"messages": [{**CHAT["messages"][0], "content": f"hi {i}"}, CHAT["messages"][1]]} for i in range(10)]
    bad = {"identical": {"non_preferred_output": PAIR["preferred_output"]}, "missing": {"non_preferred_output": None}}
    out = [{**PAIR, "input": {"messages": [{"role": "user", "content": f"hi {i}"}]}} for i in range(10)]
    for row in out[:1]:  # the first pair is the hostile one
        row.update(bad.get(kind, {}))
        if row.get("non_preferred_output") is None:
            row.pop("non_preferred_output", None)
    return out


CASES = [  # (data, flags, what the one line says)
    ("identical", ["--method", "dpo"], "identical"),
    ("missing", ["--method", "dpo"], "non_preferred_output"),
    ("pairs", [], "holds preference pairs"),
    ("chat", ["--method", "dpo"], "needs preference pairs"),
    ("pairs", ["--method", "dpo", "--beta", "0"], "beta must be"),
    ("pairs", ["--method", "dpo", "--beta", "-1"], "beta must be"),
    ("pairs", ["--method", "dpo", "--beta", "nan"], "beta must be"),
    ("pairs", ["--method", "dpo", "--beta", "1e9"], "beta must be"),
    ("pairs", ["--method", "dpo", "-p", "dpo_loss=hinge"], "dpo_loss must be one of sigmoid, robust, ipo"),
    ("pairs", ["--method", "dpo", "-p", "label_smoothing=0.5"], "label_smoothing must be in [0, 0.5)"),
    ("chat", ["-p", "dpo_loss=ipo"], "dpo_loss is for DPO runs"),
    ("pairs", ["--method", "dpo", "-p", "gpus=2"], "local DPO runs in one process"),
]


@pytest.mark.parametrize("data, flags, said", CASES, ids=[f"{c[0]}-{'-'.join(c[1][2:]) or c[1][:1]}" for c in CASES])
def test_each_bad_dpo_submit_is_one_line_and_records_nothing(ftm_home, tmp_path, tiny_llama, data, flags, said):  # noqa: F811
    path = write_jsonl(tmp_path / f"{data}.jsonl", rows(data))
    result = ftm("submit", path, "-b", "local", "-m", tiny_llama, "-p", "device=cpu", *flags)
    assert result.code == 1, result
    lines = [line for line in result.err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: ") and said in lines[0], result
    assert "Traceback" not in result.out + result.err
    assert ftm("runs", "--json").json() == []
