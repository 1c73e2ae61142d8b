"""Hostile flags and killed writers on the small commands: `ftm runs --limit`, `ftm standin --speed`,
`ftm datasets export -o` killed mid-write. Each is one line and exit 1, or leaves nothing behind
past the next ftm command."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from conftest import ftm
from test_runs import one_line_error

# A real `ftm datasets export -o` whose writer stops after its first line, so a test can kill it
# mid-write (the export is otherwise too quick to catch).
KILLED_EXPORT = """
import sys, time
from ftmanager import catalog

def stalled(ds, to, out):
    out.write("the first line\\n")
    out.out.flush()
    print("writing", flush=True)
    time.sleep(60)

catalog._write = stalled
catalog.export_dataset_to(sys.argv[1], "openai", sys.argv[2])
"""


@pytest.mark.parametrize("limit", ["0", "-1", "-100"])
def test_runs_refuses_a_limit_below_one(ftm_home, limit):
    one_line_error(ftm("runs", "--limit", limit), "--limit must be 1 or more")


def test_runs_limit_takes_the_newest_n_and_all_takes_every_run(ftm_home, chat_file):
    for _ in range(3):
        assert ftm("submit", chat_file, "-b", "fake", "--json").code == 0
    assert len(ftm("runs", "--limit", "2", "--json").json()) == 2
    assert len(ftm("runs", "--all", "--json").json()) == 3
    assert len(ftm("runs", "--all", "--limit", "1", "--json").json()) == 3


@pytest.mark.parametrize("speed", ["nan", "inf", "-inf", "NaN"])
def test_standin_refuses_a_speed_that_is_not_finite(ftm_home, speed):
    one_line_error(ftm("standin", "--port", "0", "--speed", speed, timeout=30), "--speed must be above 0 and finite")


def test_an_export_killed_mid_write_is_gone_after_the_next_ftm_command(ftm_home, chat_file, tmp_path):
    dataset = ftm("datasets", "add", chat_file, "--json").json()["id"]
    folder = tmp_path / "out"
    folder.mkdir()
    proc = subprocess.Popen([sys.executable, "-c", KILLED_EXPORT, dataset, str(folder / "data.jsonl")],
                            stdout=subprocess.PIPE, text=True, env=os.environ)
    assert proc.stdout.readline() == "writing\n"
    proc.kill()
    proc.wait()
    assert [p.name for p in folder.iterdir() if p.name.startswith(".ftm-export-")]  # what the kill left ...
    assert ftm("runs").code == 0  # ... any next command clears, not only an export to that name
    assert list(folder.iterdir()) == []


def test_a_live_export_and_a_users_own_files_are_never_swept(ftm_home, chat_file, tmp_path):
    dataset = ftm("datasets", "add", chat_file, "--json").json()["id"]
    mine = tmp_path / ".ftm-export-1-mine.jsonl"  # named like a temp file, but no note names it
    mine.write_text("keep me")
    proc = subprocess.Popen([sys.executable, "-c", KILLED_EXPORT, dataset, str(tmp_path / "data.jsonl")],
                            stdout=subprocess.PIPE, text=True, env=os.environ)
    try:
        assert proc.stdout.readline() == "writing\n"
        assert ftm("runs").code == 0
        assert len(list(tmp_path.glob(".ftm-export-*"))) == 2  # the live writer's temp file is kept
    finally:
        proc.kill()
        proc.wait()
    assert mine.read_text() == "keep me"
