"""Preference datasets (DPO): OpenAI's, Together's and TRL's pairs read into one content-addressed
form, every problem reported by line, written back out for each provider, recorded with their
kind, and refused in one line where the other kind of data is expected."""

from __future__ import annotations

import json

import pytest

from conftest import ftm
from ftmanager import data
from ftmanager.data.preference import require_kind
from ftmanager.errors import InvalidInput


def openai_row(i: int, good: str | None = None, bad: str | None = None, **extra) -> dict:
    return {"input": {"messages": [{"role": "user", "content": f"What is {i} plus {i}?"}], **extra},
            "preferred_output": [{"role": "assistant", "content": good or str(2 * i)}],
            "non_preferred_output": [{"role": "assistant", "content": bad or str(2 * i + 1)}]}


def trl_conversation(i: int) -> dict:
    return {"prompt": [{"role": "user", "content": f"What is {i} plus {i}?"}],
            "chosen": [{"role": "assistant", "content": str(2 * i)}],
            "rejected": [{"role": "assistant", "content": str(2 * i + 1)}]}


def trl_text(i: int) -> dict:
    return {"prompt": f"What is {i} plus {i}?", "chosen": str(2 * i), "rejected": str(2 * i + 1)}


def trl_implicit(i: int) -> dict:
    question = {"role": "user", "content": f"What is {i} plus {i}?"}
    return {"chosen": [question, {"role": "assistant", "content": str(2 * i)}],
            "rejected": [question, {"role": "assistant", "content": str(2 * i + 1)}]}


def write(path, rows) -> str:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return str(path)


def saved(tmp_path, rows, name="in.jsonl", **kw):
    return data.save(write(tmp_path / name, rows), tmp_path / "store", **kw)


@pytest.mark.parametrize("shape", [trl_conversation, trl_text, trl_implicit], ids=lambda f: f.__name__)
def test_trls_shapes_and_openais_rows_are_one_dataset(tmp_path, shape):
    ours = saved(tmp_path, [openai_row(i) for i in range(12)], "openai.jsonl")
    theirs = saved(tmp_path, [shape(i) for i in range(12)], "trl.jsonl")
    assert ours.format == "openai-preference" and theirs.format == "trl-preference"
    assert theirs.sha256 == ours.sha256 and theirs.report.ok
    assert data.kind_of(theirs.format) == "preference" and data.kind_of("alpaca") == "chat"


def test_implicit_text_prompts_are_cut_where_trl_cuts_them(tmp_path):
    row = {"chosen": "Q: sky colour? A: blue", "rejected": "Q: sky colour? A: green"}
    (_, example), = data.read(write(tmp_path / "t.jsonl", [row]))
    assert example["input"]["messages"] == [{"role": "user", "content": "Q: sky colour? A:"}]
    assert example["preferred_output"][0]["content"] == " blue"


def test_key_order_whitespace_and_extra_keys_do_not_change_the_id(tmp_path):
    rows = [openai_row(i) for i in range(12)]
    noisy = [json.dumps({"note": "x", **dict(reversed(list(r.items())))}, indent=None, separators=(" , ", " : "))
             for r in rows]
    assert saved(tmp_path, noisy, "noisy.jsonl").sha256 == saved(tmp_path, rows).sha256


def problems(tmp_path, rows, **kw) -> dict:
    report = data.validate(write(tmp_path / "check.jsonl", rows), **kw)
    return {(p.line, p.code): p.message for p in report.errors + report.warnings}


def test_every_problem_of_a_pair_is_reported_by_its_line(tmp_path):
    rows = [openai_row(i) for i in range(10)] + [
        openai_row(1),  # 11: a duplicate of line 2
        openai_row(20, good="same", bad="same"),  # 12
        openai_row(21, good=" "),  # 13
        {**openai_row(22), "non_preferred_output": [{"role": "assistant", "content": "a"}] * 2},  # 14
        {"input": {"messages": [{"role": "user", "content": "x"}]}, "preferred_output": []},  # 15
        {**openai_row(23), "input": {"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}]}},
        {**openai_row(24), "preferred_output": [{"role": "user", "content": "4 <|im_end|>"}]},  # 17
        {**openai_row(25), "input": "What?"},  # 18
        {"prompt": "p", "chosen": "c"},  # 19: neither format's keys complete
        "not json",  # 20
    ]
    found = problems(tmp_path, rows)
    assert found[(11, "duplicate")] == "same example as line 2"
    assert "the same" in found[(12, "identical_pair")]
    assert found[(13, "empty_content")] == "preferred_output message 1 (assistant) has empty content"
    assert "exactly one assistant message" in found[(14, "invalid_output")]
    assert "non_preferred_output" in found[(15, "missing_field")]
    assert "ends with an assistant message" in found[(16, "invalid_input")]
    assert "preferred_output message 1 contains the special token" in found[(17, "special_token")]
    assert "exactly one assistant message" in found[(17, "invalid_output")]
    assert "'input' must be an object" in found[(18, "missing_field")]
    assert (19, "unknown_format") in found or any(line == 19 for line, _ in found)
    assert found[(20, "invalid_json")].startswith("invalid JSON")
    assert not any(line is not None and line <= 10 for line, _ in found)  # the good pairs are clean


def test_a_prompt_problem_is_said_once_and_an_answer_problem_names_its_side(tmp_path):
    row = openai_row(1)
    row["non_preferred_output"][0]["content"] = ""
    row["input"]["messages"].insert(0, {"role": "robot", "content": "hi"})
    found = problems(tmp_path, [row] * 1)
    assert found[(1, "unrecognized_role")] == "input message 1 has role 'robot'"
    assert found[(1, "empty_content")] == "non_preferred_output message 1 (assistant) has empty content"
    assert sum(code == "unrecognized_role" for _, code in found) == 1


def test_tokens_count_the_prompt_with_its_longer_answer(tmp_path):
    short = data.validate(write(tmp_path / "a.jsonl", [openai_row(1, good="ok", bad="no")]))
    longer = data.validate(write(tmp_path / "b.jsonl", [openai_row(1, good="ok", bad="no " * 200)]))
    assert longer.stats["tokens"]["max"] - short.stats["tokens"]["max"] >= 199
    assert longer.stats["assistant_tokens"]["max"] > longer.stats["tokens"]["max"] - 20


def test_providers_rules_apply_to_pairs(tmp_path):
    tool = {"type": "function", "function": {"name": "add", "parameters": {"type": "object"}}}
    rows = [openai_row(i, tools=[tool]) for i in range(12)]
    found = problems(tmp_path, rows, provider="together")
    assert "together: it has tools" in found[(1, "provider_rule")]
    assert not any(code == "provider_rule" for _, code in problems(tmp_path, rows, provider="fireworks"))
    small = problems(tmp_path, [openai_row(1), openai_row(2)], provider="fireworks", model="llama-v3p1-8b-instruct")
    assert small[(None, "too_few_examples")].endswith("needs at least 3")  # the model's rule: fireworks'


def test_exports_round_trip_to_the_same_dataset(tmp_path):
    import io

    tool = {"type": "function", "function": {"name": "add", "parameters": {"type": "object"}}}
    rows = [openai_row(i) for i in range(11)] + [openai_row(11, tools=[tool])]
    first = saved(tmp_path, rows)
    for target in ("openai", "fireworks", "trl"):
        out = io.StringIO()
        assert data.export(first.path, target, out, kind="preference") == 12
        again = saved(tmp_path, out.getvalue().splitlines(), f"{target}.jsonl")
        assert again.sha256 == first.sha256, target
    with pytest.raises(InvalidInput, match="line 12: it has tools, which together's preference format"):
        data.export(first.path, "together", io.StringIO(), kind="preference")
    with pytest.raises(InvalidInput, match="unknown export format 'alpaca' for a preference dataset"):
        data.export(first.path, "alpaca", io.StringIO(), kind="preference")


def test_trl_export_is_what_trl_reads(tmp_path):
    import io

    out = io.StringIO()
    data.export(saved(tmp_path, [openai_row(i) for i in range(12)]).path, "trl", out, kind="preference")
    row = json.loads(out.getvalue().splitlines()[3])
    assert row == trl_conversation(3)


def test_a_preference_dataset_is_refused_where_chat_data_is_expected_and_the_reverse():
    pairs, chats = {"name": "prefs", "kind": "preference"}, {"name": "sums", "kind": "chat"}
    with pytest.raises(InvalidInput) as refused:
        require_kind(pairs, "chat", "a supervised run")
    assert str(refused.value) == ("dataset prefs holds preference pairs (chosen and rejected answers), but a "
                                  "supervised run needs chat examples ('messages'). Use --method dpo, or give a "
                                  "chat dataset.")
    with pytest.raises(InvalidInput, match="dataset sums holds chat examples.*a DPO run needs preference pairs"):
        require_kind(chats, "preference", "a DPO run")
    require_kind({"name": "old"}, "chat", "a supervised run")  # rows from before kinds were recorded: chat


def test_the_cli_adds_validates_exports_and_shows_the_kind(ftm_home, tmp_path):
    path = write(tmp_path / "prefs.jsonl", [trl_conversation(i) for i in range(12)])
    added = ftm("datasets", "add", path, "--name", "prefs", "--json")
    assert added.code == 0, added
    assert (added.json()["kind"], added.json()["format"], added.json()["n_examples"]) == ("preference", "trl-preference", 12)
    assert "12 preference examples" in ftm("datasets", "add", path).out
    assert "kind: preference" in ftm("datasets", "show", "prefs").out
    exported = ftm("datasets", "export", "prefs", "--to", "together")
    assert exported.code == 0 and json.loads(exported.out.splitlines()[0]) == openai_row(0)
    tree = ftm("datasets", "lineage", "prefs", "--json").json()
    assert tree["dataset"]["kind"] == "preference" and tree["exports"][0]["target"] == "together"
    refused = ftm("datasets", "export", "prefs", "--to", "sharegpt")
    assert refused.code == 1 and refused.err.count("\n") == 1 and "openai, together, fireworks, trl" in refused.err
    chat = write(tmp_path / "chat.jsonl", [{"messages": [{"role": "user", "content": "a"},
                                                         {"role": "assistant", "content": str(i)}]} for i in range(12)])
    assert ftm("datasets", "add", chat, "--json").json()["kind"] == "chat"


def test_the_cli_reports_bad_pairs_by_line(ftm_home, tmp_path):
    path = write(tmp_path / "bad.jsonl", [openai_row(i) for i in range(11)] + [openai_row(3, good="x", bad="x")])
    checked = ftm("datasets", "validate", path)
    assert checked.code == 1 and "line 12: preferred_output and non_preferred_output are the same" in checked.out
    added = ftm("datasets", "add", path)
    assert added.code == 1 and added.err.startswith("Error: ") and "identical" not in added.out
    assert ftm("datasets", "list", "--json").json() == []  # nothing half-recorded
    kept = ftm("datasets", "add", path, "--skip-invalid", "--json")
    assert kept.code == 0 and kept.json()["n_examples"] == 11 and kept.json()["kind"] == "preference"


def test_a_split_keeps_the_kind(ftm_home, tmp_path):
    from ftmanager import catalog

    row, _ = catalog.add_dataset(write(tmp_path / "p.jsonl", [openai_row(i) for i in range(20)]))
    train, valid = catalog.split_dataset(row, 0.25, seed=1)
    assert (train["kind"], valid["kind"]) == ("preference", "preference")
    assert (train["n_examples"], valid["n_examples"]) == (15, 5)


@pytest.mark.parametrize("hostile", [
    {"input": [], "preferred_output": [], "non_preferred_output": []},
    {"input": {"messages": "hi"}, "preferred_output": [{"role": "assistant", "content": "a"}],
     "non_preferred_output": [{"role": "assistant", "content": "b"}]},
    {"input": {"messages": [None]}, "preferred_output": [None], "non_preferred_output": [7]},
    {"input": {"messages": [{"role": "user", "content": "q"}]}, "preferred_output": "a", "non_preferred_output": "b"},
    {"prompt": 7, "chosen": "a", "rejected": "b"},
    {"chosen": "same", "rejected": "same"},
    {"chosen": [{"role": "user", "content": "q"}], "rejected": "text"},
    {"chosen": [], "rejected": []},
    {"prompt": "q", "chosen": {"role": "assistant"}, "rejected": None},
    {"input": {"messages": [{"role": "user", "content": "q"}], "tools": "all"},
     "preferred_output": [{"role": "assistant", "content": None, "tool_calls": [{"id": 1}]}],
     "non_preferred_output": [{"role": "assistant", "content": [{"type": "image_url"}]}]},
])
def test_hostile_pairs_are_errors_on_their_line_never_a_crash(tmp_path, hostile):
    rows = [openai_row(i) for i in range(11)] + [hostile]
    report = data.validate(write(tmp_path / "h.jsonl", rows))
    assert not report.ok and {p.line for p in report.errors} == {12}, report.errors
    result = ftm("datasets", "validate", str(tmp_path / "h.jsonl"))
    assert result.code == 1 and "Traceback" not in result.err
