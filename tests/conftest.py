"""Shared fixtures: a fresh FTM_HOME per test, the fake backend plugin, and `ftm` as a process."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PLUGINS = Path(__file__).resolve().parent / "plugins"
EXAMPLES = ROOT / "examples"

# Spinning OpenMP threads make torch ~10x slower on a shared 2-core machine (local backend tests).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

# The fake backend is a plugin found through its entry point, as a third party's would be.
sys.path.insert(0, str(PLUGINS))


@pytest.fixture
def ftm_home(tmp_path, monkeypatch) -> Path:
    """A fresh FTM_HOME (and fake provider) for one test; the library's ledger cache is reset."""
    from ftmanager import ledger

    home = tmp_path / "ftm-home"
    monkeypatch.setenv("FTM_HOME", str(home))
    monkeypatch.setenv("FTM_FAKE_DIR", str(tmp_path / "fake-provider"))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(PLUGINS), os.environ.get("PYTHONPATH", "")]))
    ledger.close_ledgers()
    yield home
    ledger.close_ledgers()


class Result:
    def __init__(self, proc: subprocess.CompletedProcess):
        self.code, self.out, self.err = proc.returncode, proc.stdout, proc.stderr

    def json(self):
        return json.loads(self.out)

    def __repr__(self):
        return f"<exit {self.code}\nstdout: {self.out[-2000:]}\nstderr: {self.err[-2000:]}>"


def ftm(*args, input=None, timeout=120, env=None) -> Result:
    """Run `ftm ARGS` as a real process, with the current environment (FTM_HOME included)."""
    cmd = [sys.executable, "-m", "ftmanager", *map(str, args)]
    proc = subprocess.run(cmd, capture_output=True, text=True, input=input, timeout=timeout,
                          env={**os.environ, **(env or {})})
    return Result(proc)


def assert_key_never_written(key: str, home: Path, *outputs: str) -> None:
    """Neither the key nor its tail is in any output, nor in any file under home."""
    for text in outputs:
        assert key not in text and key[-10:] not in text
    for path in home.rglob("*"):
        if path.is_file():
            assert key.encode() not in path.read_bytes(), path


def synced_after_kill(proc: subprocess.Popen) -> dict:
    """Kill an `ftm submit` whose job the provider has made before ftm heard of it, then `ftm sync`:
    the run it left `created`, as `ftm show` has it once sync has found its job."""
    proc.kill()
    proc.communicate()
    [run] = ftm("runs", "--json").json()
    assert run["status"] == "created" and not run["provider_job_id"]
    synced = ftm("sync", "--json")
    assert synced.code == 0, synced
    return ftm("show", run["id"], "--json").json()


@pytest.fixture
def chat_file(tmp_path) -> Path:
    """A small valid chat dataset of 12 examples."""
    path = tmp_path / "chat.jsonl"
    rows = []
    for i in range(12):
        rows.append({"messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": f"What is {i} plus {i}?"},
            {"role": "assistant", "content": f"{2 * i}"},
        ]})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@contextlib.contextmanager
def http_server(handler):
    """A real HTTP server on 127.0.0.1 answering with handler (a BaseHTTPRequestHandler class), in
    a thread, for a test's hostile provider, judge or web site; yields the server (its .url set)."""
    import threading
    from http.server import ThreadingHTTPServer

    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    server.url = f"http://127.0.0.1:{server.server_address[1]}"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
