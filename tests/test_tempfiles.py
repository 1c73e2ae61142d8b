"""Writing under a temporary name, then renaming: a killed writer leaves nothing half-written
where the next one writes, and the next one clears what the killed one left."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from ftmanager.tempfiles import built_in_place

KILLED_BUILD = """
import sys, time
from pathlib import Path
from ftmanager.tempfiles import built_in_place

def build(folder):
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(b"the first half")
    print("writing", flush=True)
    time.sleep(60)

built_in_place(Path(sys.argv[1]), build)
"""


def whole(folder: Path) -> Path:
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(b"all of it")
    return folder / "model.safetensors"


def test_a_killed_export_leaves_no_folder_to_block_the_next_one(tmp_path):
    out = tmp_path / "exported"
    proc = subprocess.Popen([sys.executable, "-c", KILLED_BUILD, str(out)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline() == "writing\n"
    proc.kill()
    proc.wait()
    assert not out.exists()  # nothing half-written where the next export goes
    assert [p.name for p in tmp_path.iterdir()] == [f".ftm-partial-{proc.pid}-exported"]
    made = built_in_place(out, whole)
    assert made == out / "model.safetensors" and made.read_bytes() == b"all of it"
    assert [p.name for p in tmp_path.iterdir()] == ["exported"]  # the killed export's folder is gone


def test_a_failed_export_leaves_nothing_and_a_live_ones_folder_is_kept(tmp_path):
    live = tmp_path / ".ftm-partial-1-exported"  # pid 1 runs: another export still at work
    live.mkdir()

    def broken(folder: Path) -> Path:
        whole(folder)
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError):
        built_in_place(tmp_path / "exported", broken)
    assert [p.name for p in tmp_path.iterdir()] == [live.name]
