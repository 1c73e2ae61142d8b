"""Bad input at the command line: one line `Error: ...`, exit code 1, nothing written."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys

import pytest
from conftest import Result, ftm

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
    "a JSON array, then more": (lambda p: (p.write_text(json.dumps([GOOD] * 12) + "\n" + json.dumps(GOOD) + "\n"), p)[1],
                                "more content after the JSON array that ends on line 1"),
    "a 5,000-digit number": (lambda p: (p.write_text(json.dumps(GOOD)[:-1] + ', "n": ' + "9" * 5000 + "}\n"), p)[1],
                             "more digits than Python reads"),
    "a JSON array nested 100k deep": (lambda p: (p.write_text("[" * 100_000 + "]" * 100_000), p)[1], "nested too deeply"),
    "a FIFO": (lambda p: (os.mkfifo(p), p)[1], "not a regular file"),
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
    path.write_text(json.dumps(multi) + "\n")
    ds = ftm("datasets", "add", path, "--json", "--model", "smollm2-135m").json()  # a local model: no minimum
    out = tmp_path / "out.json"
    result = ftm("datasets", "export", ds["id"], "--to", "alpaca", "-o", out)
    assert result.code == 1 and result.err.startswith("Error: "), result
    assert not out.exists() and not list(tmp_path.glob(".*"))


def test_a_path_that_is_not_utf8_is_stored_and_shown(ftm_home, tmp_path):
    path = os.fsdecode(bytes(tmp_path) + b"/caf\xe9.jsonl")  # as the shell passes it: bytes, not UTF-8
    with open(path, "w") as f:
        f.write((json.dumps(GOOD) + "\n") * 12)
    added = ftm("datasets", "add", path)
    assert added.code == 0 and added.out.count("\n") == 1 and "caf\ufffd" in added.out, added
    (row,) = ftm("datasets", "list", "--json").json()
    assert row["name"] == "caf\ufffd" and row["source"].endswith("caf\ufffd.jsonl")
    checked = ftm("datasets", "validate", path)
    assert checked.code == 0 and "caf\ufffd.jsonl: 12 examples" in checked.out, checked


def test_validate_refuses_a_model_it_cannot_place(ftm_home, chat_file, tmp_path):
    assert_one_line(ftm("datasets", "validate", chat_file, "--model", "nosuchmodel"), "unknown model 'nosuchmodel'")
    assert_one_line(ftm("datasets", "add", chat_file, "--model", "nosuchmodel"), "unknown model 'nosuchmodel'")
    for fine in ("HuggingFaceTB/SmolLM2-135M-Instruct", "some-org/some-model", str(tmp_path)):
        assert ftm("datasets", "validate", chat_file, "--model", fine).code == 0


@pytest.fixture
def stored(ftm_home, chat_file) -> str:
    return ftm("datasets", "add", chat_file, "--json").json()["id"]


@pytest.mark.parametrize("where, needle", [
    (lambda d: d / "missing" / "out.jsonl", "no such directory"),
    (lambda d: d, "is a directory"),
    (lambda d: (os.mkfifo(d / "pipe"), d / "pipe")[1], "not a regular file"),
    (lambda d: "/proc/ftm-export.jsonl", "cannot write /proc/ftm-export.jsonl"),
])
def test_export_to_a_place_it_cannot_write_is_one_line(stored, tmp_path, where, needle):
    out = tmp_path / "out"
    out.mkdir()
    target = where(out)
    assert_one_line(ftm("datasets", "export", stored, "--to", "openai", "-o", target), needle)
    assert sorted(p.name for p in out.iterdir()) == (["pipe"] if str(target).endswith("pipe") else [])


def _file_size_limit(limit: int):
    """A process whose writes past `limit` bytes fail (EFBIG), as on a disk that is full."""
    return lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))


def _rows(tag: str, n: int = 2000) -> str:
    return "".join(json.dumps({"messages": [{"role": "user", "content": f"{tag} question {i}? " + "x" * 200},
                                            {"role": "assistant", "content": "Yes."}]}) + "\n" for i in range(n))


def test_a_full_disk_is_one_line_and_leaves_nothing_behind(ftm_home, tmp_path):
    (tmp_path / "one.jsonl").write_text(_rows("one"))  # ~500 KB stored
    (tmp_path / "two.jsonl").write_text(_rows("two"))
    stored = ftm("datasets", "add", tmp_path / "one.jsonl", "--json").json()["id"]
    limit = _file_size_limit(256 << 10)  # room for the ledger, not for the data
    ftm_cmd = [sys.executable, "-m", "ftmanager", "datasets"]
    proc = subprocess.run([*ftm_cmd, "add", str(tmp_path / "two.jsonl")], check=False, capture_output=True, text=True, timeout=120, preexec_fn=limit)
    assert_one_line(Result(proc), "cannot write to")
    assert [p.name for p in (ftm_home / "datasets").iterdir() if p.name.startswith(".")] == []
    assert len(ftm("datasets", "list", "--json").json()) == 1
    export = [*ftm_cmd, "export", stored, "--to", "openai"]
    proc = subprocess.run([*export, "-o", str(tmp_path / "o.jsonl")], check=False, capture_output=True, text=True, timeout=120, preexec_fn=limit)
    assert_one_line(Result(proc), "Free some space")
    assert not (tmp_path / "o.jsonl").exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    with open("/dev/full", "w") as full:  # stdout on a full disk: an error, never a silent loss
        proc = subprocess.run(export, check=False, stdout=full, stderr=subprocess.PIPE, text=True, timeout=120)
    assert proc.returncode == 1 and proc.stderr.startswith("Error: cannot write the export to standard output"), proc.stderr


def test_a_killed_exports_temp_file_is_cleared_and_a_re_export_replaces_the_file(stored, tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    out = tmp_path / "out.jsonl"
    leftover = tmp_path / f".ftm-export-{dead.pid}-out.jsonl"
    leftover.write_text('{"messages": [')
    out.write_text("an older export\n")
    assert ftm("datasets", "export", stored, "--to", "openai", "-o", out).code == 0
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix == ".jsonl") == ["chat.jsonl", "out.jsonl"]
    assert len(out.read_text().splitlines()) == 12


def test_adding_stored_content_under_a_new_name_renames_it(stored, chat_file):
    again = ftm("datasets", "add", chat_file, "--name", "arithmetic")
    assert again.code == 0 and again.out == f"Already stored as {stored[:12]} (arithmetic, 12 examples, from openai); renamed from chat\n"
    assert ftm("datasets", "show", "arithmetic", "--json").json()["id"] == stored
    assert ftm("datasets", "add", chat_file, "--json").json()["name"] == "arithmetic"  # no --name: kept
