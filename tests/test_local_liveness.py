"""poll() notices a worker that is gone, replaced (pid reuse after a reboot) or silent."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

from ftm_backends.local import LocalBackend
from ftm_backends.local.trainer import rundir


def fake_run(tmp_path, pid: int, start_time: float | None, last_record_age: float = 0.0):
    """A run dir whose worker is `pid`, with one 'running' record last_record_age seconds old."""
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / rundir.SPEC).write_text(json.dumps({"run_id": "run-x"}))
    (run_dir / rundir.LAUNCH).write_text(json.dumps({"pid": pid, "start_time": start_time}))
    record = {"kind": "status", "t": time.time() - last_record_age, "status": "running"}
    (run_dir / rundir.PROGRESS).write_text(json.dumps(record) + "\n")
    return str(run_dir)


def test_a_pid_now_owned_by_another_process_is_a_lost_worker(tmp_path):
    # After a reboot the recorded pid can belong to anything: here, this very test process.
    job = fake_run(tmp_path, os.getpid(), start_time=time.time() - 10 ** 6)
    p = LocalBackend().poll(job, {})
    assert p.status == "failed" and p.error["code"] == "worker_lost"
    assert "belongs to another process" in p.error["message"]
    again = LocalBackend().poll(job, p.cursor)  # recorded once, in the progress file
    assert again.status == "failed" and not again.events


def test_a_silent_worker_is_stopped_and_failed(tmp_path):
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
    try:
        job = fake_run(tmp_path, sleeper.pid, rundir.process_start_time(sleeper.pid),
                       last_record_age=rundir.HEARTBEAT_STALE + 10)
        p = LocalBackend().poll(job, {})
        assert p.status == "failed" and "no heartbeat" in p.error["message"]
        assert sleeper.wait(timeout=10) != 0  # killed, so it cannot report after being failed
    finally:
        if sleeper.poll() is None:
            sleeper.kill()


def test_a_live_worker_keeps_its_status(tmp_path):
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
    try:
        job = fake_run(tmp_path, sleeper.pid, rundir.process_start_time(sleeper.pid))
        assert LocalBackend().poll(job, {}).status == "running"
    finally:
        sleeper.kill()
        sleeper.wait()
