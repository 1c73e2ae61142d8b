"""Formats: detection, conversion to canonical chat, export, and round trips by sha256."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from ftmanager import data
from ftmanager.errors import InvalidInput

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.fixture(autouse=True)
def _home(tmp_path, monkeypatch):
    monkeypatch.setenv("FTM_HOME", str(tmp_path / "home"))


def write_jsonl(path: Path, records) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return path


def chat(q: str, a: str, system: str | None = None) -> dict:
    msgs = [{"role": "system", "content": system}] if system else []
    return {"messages": msgs + [{"role": "user", "content": q}, {"role": "assistant", "content": a}]}


ALPACA = {"instruction": "Name the capital.", "input": "France", "output": "Paris"}
PROMPT_COMPLETION = {"prompt": "Capital of France?", "completion": "Paris"}
SHAREGPT = {"conversations": [{"from": "system", "value": "Be brief."}, {"from": "human", "value": "Capital of France?"},
                              {"from": "gpt", "value": "Paris"}]}
TOOLS = {
    "tools": [{"type": "function", "function": {"name": "weather", "parameters": {"type": "object", "properties": {}}}}],
    "messages": [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": None,
         "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "weather", "arguments": "{\"city\":\"Paris\"}"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "18C, sunny"},
        {"role": "assistant", "content": "It is 18C and sunny.", "weight": 1},
    ],
}


@pytest.mark.parametrize("record, fmt", [
    (chat("q", "a"), "openai"),
    (ALPACA, "alpaca"),
    (PROMPT_COMPLETION, "prompt-completion"),
    (SHAREGPT, "sharegpt"),
    (TOOLS, "openai"),
])
def test_each_format_is_detected(tmp_path, record, fmt):
    path = write_jsonl(tmp_path / "d.jsonl", [record] * 2)
    assert data.validate(path).format == fmt


def test_conversions_give_the_canonical_chat(tmp_path):
    def first(record):
        return next(data.read(write_jsonl(tmp_path / "d.jsonl", [record])))[1]

    assert first(ALPACA) == chat("Name the capital.\n\nFrance", "Paris")
    assert first({**ALPACA, "input": ""}) == chat("Name the capital.", "Paris")
    assert first(PROMPT_COMPLETION) == chat("Capital of France?", "Paris")
    assert first(SHAREGPT) == chat("Capital of France?", "Paris", system="Be brief.")
    assert first(TOOLS) == TOOLS  # tools, tool_calls, the tool role and weight are kept as they are


def test_alpaca_json_array_file_reads_with_line_numbers(tmp_path):
    path = tmp_path / "a.json"
    path.write_text(json.dumps([ALPACA, {**ALPACA, "input": "Japan", "output": "Tokyo"}], indent=2))
    got = list(data.read(path))
    assert [example["messages"][-1]["content"] for _, example in got] == ["Paris", "Tokyo"]
    assert [line for line, _ in got] == [2, 7]  # where each element starts in the file


def test_alpaca_example_file_is_the_same_dataset_as_the_chat_one(tmp_path):
    a = data.save(EXAMPLES / "capitals.jsonl", tmp_path)
    b = data.save(EXAMPLES / "capitals_alpaca.json", tmp_path)
    assert (a.format, b.format) == ("openai", "alpaca")
    assert a.sha256 == b.sha256 and not b.created


def test_trl_style_object_arguments_become_json_strings(tmp_path):
    trl = json.loads(json.dumps(TOOLS))
    trl["messages"][1]["tool_calls"][0]["function"]["arguments"] = {"city": "Paris"}
    example = next(data.read(write_jsonl(tmp_path / "d.jsonl", [trl])))[1]
    assert example["messages"][1]["tool_calls"][0]["function"]["arguments"] == '{"city":"Paris"}'


def test_forced_format_that_does_not_fit_names_the_line(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [chat("q", "a"), chat("q2", "a2")])
    with pytest.raises(InvalidInput, match=r"d.jsonl:1: alpaca example needs a string 'instruction'"):
        list(data.read(path, fmt="alpaca"))
    with pytest.raises(InvalidInput, match="unknown format 'csv'"):
        list(data.read(path, fmt="csv"))


def exported(path: Path, to: str) -> list[dict]:
    out = io.StringIO()
    n = data.export(path, to, out)
    lines = out.getvalue().splitlines()
    assert n == len(lines)
    return [json.loads(line) for line in lines]


def test_export_shapes(tmp_path):
    src = data.save(write_jsonl(tmp_path / "d.jsonl", [chat("Capital of France?", "Paris", "Be brief.")]), tmp_path / "s", check=False)
    assert exported(src.path, "alpaca") == [{"instruction": "Capital of France?", "input": "", "output": "Paris", "system": "Be brief."}]
    assert exported(src.path, "sharegpt") == [SHAREGPT]
    assert exported(src.path, "together") == exported(src.path, "openai") == [chat("Capital of France?", "Paris", "Be brief.")]
    tools = data.save(write_jsonl(tmp_path / "t.jsonl", [{**TOOLS, "messages": TOOLS["messages"][:3] + [{"role": "assistant", "content": "Sunny."}]}]),
                       tmp_path / "s", check=False)
    call = exported(tools.path, "trl")[0]["messages"][1]["tool_calls"][0]
    assert call["function"]["arguments"] == {"city": "Paris"}  # an object, as chat templates expect


@pytest.mark.parametrize("to, record, why", [
    ("alpaca", {"messages": chat("q", "a")["messages"] * 2}, "one user message and one assistant reply"),
    ("alpaca", TOOLS, "tools"),
    ("sharegpt", {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a", "weight": 0},
                               {"role": "user", "content": "q"}, {"role": "assistant", "content": "b"}]}, "weight 0"),
    ("together", {"messages": [{"role": "user", "content": "q"}, {"role": "user", "content": "q"},
                               {"role": "assistant", "content": "a"}]}, "alternate"),
    ("trl", {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a", "weight": 0},
                          {"role": "user", "content": "q"}, {"role": "assistant", "content": "b"}]}, "weight 0"),
])
def test_export_refuses_what_the_target_cannot_hold_and_writes_nothing(tmp_path, to, record, why):
    src = data.save(write_jsonl(tmp_path / "d.jsonl", [chat("q", "a"), record]), tmp_path / "s", check=False)
    out = io.StringIO()
    with pytest.raises(InvalidInput, match=rf"1 example\(s\) cannot be written as {to}: line 2: .*{why}") as e:
        data.export(src.path, to, out)
    assert out.getvalue() == ""
    assert "\n" not in e.value.line()


PLAIN = [chat(f"Question {i}?", f"Answer {i}.", "Be brief." if i % 2 else None) for i in range(12)]
MULTI = [{"messages": chat("a", "b", "s")["messages"] + chat("c", "d")["messages"]}] * 1 + PLAIN[:11]


@pytest.mark.parametrize("to, records", [
    ("openai", [TOOLS, *PLAIN]),
    ("together", MULTI),
    ("sharegpt", MULTI),
    ("alpaca", PLAIN),
    ("trl", MULTI),
])
def test_lossless_round_trips_keep_the_sha256(tmp_path, to, records):
    first = data.save(write_jsonl(tmp_path / "in.jsonl", records), tmp_path / "s", check=False)
    again = tmp_path / "out.jsonl"
    with open(again, "w") as out:
        data.export(first.path, to, out)
    second = data.save(again, tmp_path / "s", check=False)
    assert second.sha256 == first.sha256 and not second.created


def test_lossy_round_trips_are_the_documented_ones(tmp_path):
    # an explicit weight 1 means the same as none: targets without weights drop it
    weighted = [{"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a", "weight": 1}]}] * 2
    first = data.save(write_jsonl(tmp_path / "w.jsonl", weighted), tmp_path / "s", check=False)
    again = tmp_path / "out.jsonl"
    with open(again, "w") as out:
        data.export(first.path, "sharegpt", out)
    second = data.save(again, tmp_path / "s", check=False)
    assert second.sha256 != first.sha256
    assert [m.get("weight") for _, ex in data.read(second.path) for m in ex["messages"]] == [None, None] * 2
    # alpaca folds a non-empty input into the instruction: the input field does not come back
    src = data.save(write_jsonl(tmp_path / "a.jsonl", [ALPACA] * 2), tmp_path / "s", check=False)
    assert exported(src.path, "alpaca")[0] == {"instruction": "Name the capital.\n\nFrance", "input": "", "output": "Paris"}


ASSISTANT_FIRST = {"messages": [{"role": "assistant", "content": "Hello! What can I do?"},
                                {"role": "user", "content": "Capital of France?"},
                                {"role": "assistant", "content": "Paris", "weight": 1}]}
SYSTEM_LATE = {"messages": [{"role": "user", "content": "q"}, {"role": "system", "content": "Be brief."},
                            {"role": "assistant", "content": "a", "weight": 0}, {"role": "user", "content": "q2"},
                            {"role": "assistant", "content": "b"}]}


def test_together_export_follows_togethers_own_file_check(tmp_path):
    from peers import together_files  # Together's check_file, from its SDK on PyPI (tests/peers)

    records = [ASSISTANT_FIRST, SYSTEM_LATE, *MULTI]
    src = data.save(write_jsonl(tmp_path / "d.jsonl", records), tmp_path / "s", check=False)
    out = tmp_path / "together.jsonl"
    with open(out, "w") as f:
        assert data.export(src.path, "together", f) == len(records)
    verdict = together_files.check_file(out)
    assert verdict["is_check_passed"], verdict["message"]
    # what Together's check refuses, ftm's export refuses too (two turns in a row from one role)
    twice = {"messages": [{"role": "user", "content": "q"}, {"role": "user", "content": "q"},
                          {"role": "assistant", "content": "a"}]}
    (tmp_path / "twice.jsonl").write_text(json.dumps(twice) + "\n")
    assert "must alternate" in together_files.check_file(tmp_path / "twice.jsonl")["message"]
    bad = data.save(write_jsonl(tmp_path / "b.jsonl", [twice]), tmp_path / "s", check=False)
    with pytest.raises(InvalidInput, match=r"line 1: messages 1 and 2 are both 'user'"):
        data.export(bad.path, "together", io.StringIO())


@pytest.mark.parametrize("to", ["openai", "together", "alpaca", "trl", "sharegpt"])
def test_exported_lines_escape_the_characters_readers_split_lines_on(tmp_path, to):
    text = "one\u2028two\u2029three\x85four"
    records = [chat(f"Say it {i}: {text}", text) for i in range(2)]
    src = data.save(write_jsonl(tmp_path / "d.jsonl", records), tmp_path / "s", check=False)
    out = io.StringIO()
    data.export(src.path, to, out)
    written = out.getvalue()
    assert not {"\u2028", "\u2029", "\x85"} & set(written)
    assert len(written.splitlines()) == 2  # str.splitlines splits on all three
    again = tmp_path / "again.jsonl"
    again.write_text(written, encoding="utf-8")
    assert data.save(again, tmp_path / "s", check=False).sha256 == src.sha256  # nothing lost
