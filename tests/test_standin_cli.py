"""`ftm standin` as a real process: it says where it listens, serves the SDK, injects faults, stops."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys

import openai

from conftest import ftm


def test_standin_serves_until_terminated(tmp_path):
    proc = subprocess.Popen(
        [sys.executable, "-m", "ftmanager", "standin", "--port", "0", "--speed", "50",
         "--fault", "503 GET /models"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first = proc.stdout.readline()
        url = re.search(r"(http://127\.0\.0\.1:\d+/v1)", first).group(1)
        assert "Not OpenAI" in first
        client = openai.OpenAI(api_key="sk-test", base_url=url, max_retries=0)
        try:
            client.models.list()
            raise AssertionError("the --fault was not injected")
        except openai.InternalServerError:
            pass
        assert "gpt-4o-mini-2024-07-18" in [m.id for m in client.models.list().data]
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=10)
    assert proc.returncode == 0 and "stand-in stopped" in err and "Traceback" not in err


def test_bad_flags_are_one_line_errors():
    bad = ftm("standin", "--fault", "teapot")
    assert bad.code == 1 and bad.err.startswith("Error: bad --fault 'teapot'") and len(bad.err.splitlines()) == 1
    slow = ftm("standin", "--speed", "0")
    assert slow.code == 1 and "--speed must be above 0" in slow.err
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = ftm("standin", "--port", taken.getsockname()[1])
    assert busy.code == 1 and "cannot listen on" in busy.err and "--port 0" in busy.err
    for port in ("99999", "-1"):
        out_of_range = ftm("standin", "--port", port)
        assert out_of_range.code == 1 and out_of_range.err == f"Error: --port must be 0 to 65535, not {port}. Use --port 0 for a free one.\n"
