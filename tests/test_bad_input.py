"""Bad input at the command line: one line `Error: ...`, exit code 1, nothing written."""

from __future__ import annotations

import json
import os

import pytest

from conftest import ftm

GOOD = {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]}


def huge_line(p):
    """A 2 GB single line: 32 MB of text, then a sparse hole the disk does not store."""
    with open(p, "wb") as f:
        f.write(b'{"messages": "' + b"x" * (32 << 20))
        f.seek(2 << 30)
        f.write(b'"}\n')
    return p


BAD_FILES = {
    "malformed JSON": (lambda p: (p.write_text('{"messages": [\n'), p)[1], "invalid JSON at column 15"),
    "wrong types": (lambda p: (p.write_text(json.dumps({"messages": "hello"}) + "\n"), p)[1], "no 'messages' list"),
    "an empty file": (lambda p: (p.write_text(""), p)[1], "the file is empty"),
    "a binary file": (lambda p: (p.write_bytes(b"\x7fELF\x02\x01\x01\x00" + bytes(range(256)) * 8), p)[1], "binary"),
    "a directory": (lambda p: (p.mkdir(), p)[1], "is a directory"),
    "a missing file": (lambda p: p, "no such file"),
    "an unknown format": (lambda p: (p.write_text('{"question": "q", "answer": "a"}\n'), p)[1], "unknown format"),
    "a 2 GB single line": (huge_line, "longer than"),
}


def assert_one_line(result, needle):
    assert result.code == 1, result
    assert result.err.startswith("Error: ") and len(result.err.strip().splitlines()) == 1, result
    assert "Traceback" not in result.err and needle in result.err, result


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_bad_files_are_one_line_and_write_nothing(ftm_home, tmp_path, case):
    make, needle = BAD_FILES[case]
    path = make(tmp_path / "bad.jsonl")
    for args in (["datasets", "add", path], ["submit", path, "--backend", "fake"]):
        assert_one_line(ftm(*args), needle)
    report = ftm("datasets", "validate", path)  # a full report where the file can be read at all
    assert report.code == 1 and "Traceback" not in report.err and needle in report.out + report.err, report
    assert ftm("datasets", "list", "--json").json() == []
    assert ftm("runs", "--json").json() == []
    stored = ftm_home / "datasets"
    assert not stored.exists() or os.listdir(stored) == []


def test_unknown_names_are_one_line(ftm_home, tmp_path):
    good = tmp_path / "good.jsonl"
    good.write_text((json.dumps(GOOD) + "\n") * 3)
    assert_one_line(ftm("datasets", "add", good, "--format", "yaml"), "yaml")
    assert_one_line(ftm("datasets", "export", "nope", "--to", "openai"), "no dataset matches 'nope'")
    assert_one_line(ftm("submit", good, "--backend", "nope"), "no backend called 'nope'")
    assert_one_line(ftm("show", "run-nope"), "no run matches 'run-nope'")
    assert ftm("datasets", "list", "--json").json() == []


def test_an_export_target_that_cannot_hold_the_data_writes_no_file(ftm_home, tmp_path):
    multi = {"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"},
                          {"role": "user", "content": "c"}, {"role": "assistant", "content": "d"}]}
    path = tmp_path / "multi.jsonl"
    path.write_text((json.dumps(multi) + "\n"))
    ds = ftm("datasets", "add", path, "--json", "--model", "smollm2-135m").json()  # a local model: no minimum
    out = tmp_path / "out.json"
    result = ftm("datasets", "export", ds["id"], "--to", "alpaca", "-o", out)
    assert result.code == 1 and result.err.startswith("Error: "), result
    assert not out.exists() and not list(tmp_path.glob(".*"))
