"""save() and split(): content-addressed, canonical, atomic, deterministic."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
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
        f"Run `ftm datasets validate {path}` to see them all, or `ftm datasets add {path} --skip-invalid` "
        "to store the valid examples.")
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


SWAP = """
import os, sys, time
a, b, target = sys.argv[1:4]
end = time.time() + 60
while time.time() < end:
    for src in (a, b):
        os.link(src, target + ".new")
        os.replace(target + ".new", target)  # as an editor saves: a whole new file at the path
        if os.path.exists(target + ".new"):
            os.unlink(target + ".new")  # renaming a link onto the same file does nothing
"""


def test_a_file_replaced_while_it_is_stored_is_stored_as_it_was_checked(tmp_path):
    rows = [chat(i) for i in range(500)]  # long enough to read that the file changes meanwhile
    good = write(tmp_path / "good.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    bad_rows = rows + [chat(i) for i in range(40, 44)] + [{"messages": [{"role": "user", "content": "<|endoftext|>"}]}]
    bad = write(tmp_path / "bad.jsonl", "".join(json.dumps(r) + "\n" for r in bad_rows))
    target = tmp_path / "live.jsonl"
    os.link(good, target)
    swapper = subprocess.Popen([sys.executable, "-c", SWAP, str(good), str(bad), str(target)])
    stored, refused = [], 0
    try:
        while target.stat().st_ino == good.stat().st_ino and swapper.poll() is None:
            time.sleep(0.01)  # until the swapping has begun
        for _ in range(30):  # each try stored the other version a quarter of the time before
            try:
                stored.append(data.save(target, tmp_path / "d"))
            except InvalidInput:
                refused += 1
        assert swapper.poll() is None, "the swapping stopped: the test proved nothing"
    finally:
        swapper.kill()
        swapper.wait()
    clean = data.save(good, tmp_path / "clean")
    assert stored, "the good version was never picked up: the test proved nothing"
    for saved in stored:  # never the invalid version, never another version's statistics
        assert saved.sha256 == clean.sha256
        assert saved.n_examples == saved.report.stats["examples"] == len(saved.path.read_bytes().splitlines()) == 500


def test_temp_files_of_killed_writers_are_cleared_and_live_ones_kept(tmp_path):
    dest = tmp_path / "d"
    dest.mkdir()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    leftovers = [dest / f".partial-{dead.pid}-abc.jsonl", dest / ".partial-k3x9_q1z.jsonl"]  # by pid; an older ftm's
    for path in leftovers:
        path.write_text("half an example")
    os.utime(leftovers[1], (time.time() - 7200, time.time() - 7200))
    live = dest / f".partial-{os.getpid()}-xyz.jsonl"  # a writer still at work: this process
    live.write_text("being written")
    saved = data.save(write(tmp_path / "a.jsonl", "".join(json.dumps(r) + "\n" for r in ROWS)), dest)
    assert sorted(p.name for p in dest.iterdir()) == sorted([saved.path.name, live.name])


def test_skip_invalid_stores_the_valid_examples_and_names_each_skipped_line(tmp_path):
    rows = [json.dumps(r) for r in ROWS]
    rows[4] = '{"messages": [{"role": "user", "content": "<|endoftext|>"}]}'
    rows[9] = "{broken"
    rows[20] = json.dumps({"messages": [{"role": "user", "content": "q"}]})
    path = write(tmp_path / "some-bad.jsonl", "\n".join(rows) + '\n{"messages": [{"role": "user", "content": "cut off')
    saved = data.save(path, tmp_path / "d", skip_invalid=True)
    assert [line for line, _ in saved.skipped] == [5, 10, 21, 41]
    assert "special token" in saved.skipped[0][1] and "invalid JSON" in saved.skipped[1][1]
    expected = [ROWS[i] for i in range(40) if i not in (4, 9, 20)]
    assert [ex for _, ex in data.read(saved.path)] == expected
    assert saved.n_examples == saved.report.stats["examples"] == 37  # the statistics of what is stored
    assert saved.report.ok and saved.report.path == str(path)
    with pytest.raises(InvalidInput, match=r"after skipping 38 invalid record\(s\), 2 example\(s\); .* needs at least 10"):
        data.save(write(tmp_path / "mostly-bad.jsonl", "\n".join(rows[:2] + ["{x"] * 38) + "\n"), tmp_path / "d", skip_invalid=True)
    assert sorted(p.name for p in (tmp_path / "d").iterdir()) == [saved.path.name]


def test_a_local_runs_validation_file_is_held_to_the_local_models_rules(ftm_home, tmp_path):
    from ftm_backends.local import LocalBackend
    from ftmanager.catalog import dataset_arg

    small = write(tmp_path / "valid.jsonl", "".join(json.dumps(r) + "\n" for r in ROWS[:3]))
    assert dataset_arg(str(small), LocalBackend.default_model)["n_examples"] == 3  # as jobs.submit calls it
    with pytest.raises(InvalidInput, match="needs at least 10"):
        dataset_arg(str(small), "gpt-4o-mini")  # an OpenAI run's validation file: OpenAI's minimum
