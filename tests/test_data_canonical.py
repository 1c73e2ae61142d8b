"""save() and split(): content-addressed, canonical, atomic, deterministic."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from ftmanager import data
from ftmanager.errors import InvalidInput


@pytest.fixture(autouse=True)
def _home(tmp_path, monkeypatch):
    monkeypatch.setenv("FTM_HOME", str(tmp_path / "home"))


def chat(i: int) -> dict:
    return {"messages": [{"role": "user", "content": f"Question {i}?"}, {"role": "assistant", "content": f"Answer {i}."}]}


ROWS = [chat(i) for i in range(40)]


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_store_is_canonical_and_content_addressed(tmp_path):
    dest = tmp_path / "datasets"
    compact = write(tmp_path / "a.jsonl", "".join(json.dumps(r) + "\n" for r in ROWS))
    # same content: other key order, spacing, CRLF, a BOM and a blank line
    reordered = [{"messages": [{"content": m["content"], "role": m["role"]} for m in r["messages"]]} for r in ROWS]
    messy = write(tmp_path / "b.jsonl", "\ufeff" + "\r\n".join(json.dumps(r, indent=None, separators=(" , ", " : ")) for r in reordered) + "\r\n\r\n")
    a = data.save(compact, dest, name="caps")
    b = data.save(messy, dest)
    assert a.sha256 == b.sha256 and (a.created, b.created) == (True, False)
    assert (a.n_examples, a.format, a.name, b.name) == (40, "openai", "caps", "b")
    body = a.path.read_bytes()
    assert a.path == dest / f"{a.sha256}.jsonl" and hashlib.sha256(body).hexdigest() == a.sha256
    assert body.splitlines()[0] == b'{"messages":[{"content":"Question 0?","role":"user"},{"content":"Answer 0.","role":"assistant"}]}'
    assert sorted(p.name for p in dest.iterdir()) == [a.path.name]  # nothing else, no temp files
    assert a.report.ok and a.report.n_examples == 40


def test_store_refuses_invalid_data_with_one_line_and_writes_nothing(tmp_path):
    rows = [json.dumps(r) for r in ROWS]
    rows[4] = '{"messages": [{"role": "user", "content": "<|endoftext|>"}]}'
    rows[9] = "{broken"
    path = write(tmp_path / "bad.jsonl", "\n".join(rows) + "\n")
    with pytest.raises(InvalidInput) as e:
        data.save(path, tmp_path / "datasets")
    assert e.value.line() == (
        f"{path} has 3 problems (first: {path}:5: message 1 contains the special token <|endoftext|>). "
        f"Run `ftm datasets validate {path}` to see them all.")
    assert not (tmp_path / "datasets").exists() or not list((tmp_path / "datasets").iterdir())


def test_unconvertible_record_leaves_no_partial_file_even_unchecked(tmp_path):
    rows = [json.dumps(r) for r in ROWS] + ["[1, 2, 3]"]
    path = write(tmp_path / "bad.jsonl", "\n".join(rows) + "\n")
    dest = tmp_path / "datasets"
    with pytest.raises(InvalidInput, match=r"bad.jsonl:41: expected a JSON object, got an array"):
        data.save(path, dest, check=False)
    assert list(dest.iterdir()) == []  # the temp file written so far is gone


def test_unchecked_store_takes_data_that_breaks_training_rules(tmp_path):
    path = write(tmp_path / "heldout.jsonl", "".join(json.dumps(r) + "\n" for r in ROWS[:3]))
    with pytest.raises(InvalidInput, match="fewer than|at least 10|problems"):
        data.save(path, tmp_path / "d")
    stored = data.save(path, tmp_path / "d", check=False)
    assert stored.n_examples == 3 and not stored.report.ok


def test_split_is_deterministic_and_complete(tmp_path):
    src = data.save(write(tmp_path / "a.jsonl", "".join(json.dumps(r) + "\n" for r in ROWS)), tmp_path / "d")
    train, valid = data.split(src.path, 0.25, seed=7, dest_dir=tmp_path / "d")
    again = data.split(src.path, 0.25, seed=7, dest_dir=tmp_path / "d")
    other = data.split(src.path, 0.25, seed=8, dest_dir=tmp_path / "d")
    assert (train.sha256, valid.sha256) == (again[0].sha256, again[1].sha256)
    assert not again[0].created and not again[1].created
    assert valid.sha256 != other[1].sha256
    assert (train.n_examples, valid.n_examples) == (30, 10)
    lines = lambda s: s.path.read_bytes().splitlines()
    assert sorted(lines(train) + lines(valid)) == sorted(lines(src))
    assert valid.report is not None and valid.report.n_examples == 10


@pytest.mark.parametrize("fraction", [0, 1, 1.5, 0.001])
def test_split_refuses_an_empty_side(tmp_path, fraction):
    src = data.save(write(tmp_path / "a.jsonl", "".join(json.dumps(r) + "\n" for r in ROWS)), tmp_path / "d")
    with pytest.raises(InvalidInput):
        data.split(src.path, fraction, seed=1, dest_dir=tmp_path / "d")
    assert [p.name for p in (tmp_path / "d").iterdir()] == [src.path.name]
