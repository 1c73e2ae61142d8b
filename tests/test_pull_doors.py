"""`ftm pull` against a provider that misbehaves: a real run on the Together (or Fireworks)
stand-in, then pulled from a hostile server on 127.0.0.1 that answers the same paths. Every
misbehaviour is one line `Error: ...`, exit 1, with nothing recorded and nothing left in the
run's folder; a dropped download resumes with a Range request; an archive that unpacks past its
cap is stopped."""

from __future__ import annotations

import io
import json
import socket
import tarfile
import time
from http.server import BaseHTTPRequestHandler

import pytest
from conftest import ftm, http_server

from ftmanager.standin import standin as fireworks_standin
from ftmanager.standin.together import standin as together_standin

MODEL = "meta-llama/Meta-Llama-3.1-8B-Instruct-Reference"
FAST = {"pending": 0.1, "queued": 0.1, "step": 0.05, "compressing": 0.05, "uploading": 0.05}
CONFIG = json.dumps({"peft_type": "LORA", "r": 4, "base_model_name_or_path": "meta-llama/Meta-Llama-3.1-8B-Instruct"})


def safetensors_bytes() -> bytes:
    from safetensors.numpy import save

    import numpy as np

    return save({"base_model.model.lm_head.lora_A.weight": np.ones((4, 8), dtype=np.float32)})


def archive(files: dict[str, bytes], compress=True) -> bytes:
    """A .tar.zst (or plain .tar) of these files."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    if not compress:
        return raw.getvalue()
    import zstandard

    return zstandard.ZstdCompressor().compress(raw.getvalue())


def bomb(size: int) -> bytes:
    """A .tar.zst of a few KB holding one member of `size` zero bytes."""
    import zstandard

    class Zeros(io.RawIOBase):
        def __init__(self):
            self.left = size

        def readable(self):
            return True

        def readinto(self, buf):
            n = min(len(buf), self.left)
            buf[:n] = bytes(n)
            self.left -= n
            return n

    out = io.BytesIO()
    with zstandard.ZstdCompressor(level=1).stream_writer(out, closefd=False) as z, \
            tarfile.open(fileobj=z, mode="w|") as tar:
        info = tarfile.TarInfo("adapter/adapter_model.safetensors")
        info.size = size
        tar.addfile(info, io.BufferedReader(Zeros(), 1 << 20))
    return out.getvalue()


GOOD = archive({"adapter/adapter_config.json": CONFIG.encode(), "adapter/adapter_model.safetensors": safetensors_bytes()})


class Hostile(BaseHTTPRequestHandler):
    """Answers Together's download and Fireworks' download endpoint and files as `server.mode` says."""

    protocol_version = "HTTP/1.1"

    def do_GET(self):  # noqa: N802
        srv = self.server
        srv.seen.append((self.path, self.headers.get("Range")))
        if ":getDownloadEndpoint" in self.path:
            return self.send(200, "application/json", srv.endpoint if isinstance(srv.endpoint, bytes)
                             else json.dumps(srv.endpoint).encode())
        name = self.path.rsplit("/", 1)[-1]
        mode, body = srv.mode, srv.files.get(name, srv.body)
        if callable(mode):
            return mode(self, body)
        return getattr(self, mode)(body)

    def send(self, status, kind, body, length=None, extra=()):
        self.send_response(status)
        self.send_header("content-type", kind)
        self.send_header("content-length", str(len(body) if length is None else length))
        for key, value in extra:
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)

    def whole(self, body):
        start = int(self.headers["Range"][6:-1]) if self.headers.get("Range") and self.server.ranges else 0
        extra = [("content-range", f"bytes {start}-{len(body) - 1}/{len(body)}")] if start else []
        self.send(206 if start else 200, "application/octet-stream", body[start:], extra=extra)

    def short_once(self, body):
        self.close_connection = True  # the body ends short: the connection closes mid-way
        if len([s for s in self.server.seen if "download" in s[0] or "/files/" in s[0]]) == 1:
            return self.send(200, "application/octet-stream", body[: len(body) // 2], length=len(body))
        self.whole(body)

    def short(self, body):
        self.close_connection = True
        self.send(200, "application/octet-stream", body[:10], length=len(body))

    def stall(self, body):
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body[:10])
        self.wfile.flush()
        time.sleep(3)

    def drop(self, body):
        self.close_connection = True
        self.connection.shutdown(socket.SHUT_RDWR)

    def empty(self, body):
        self.send(200, "application/octet-stream", b"")

    def chunked(self, body):
        self.send_response(200)
        self.send_header("transfer-encoding", "chunked")
        self.end_headers()
        for piece in (b"not a tar ", b"at all\n" * 100):
            self.wfile.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
        self.wfile.write(b"0\r\n\r\n")

    def html(self, body):
        self.send(200, "text/html; charset=utf-8", b"<html><body>Sign in</body></html>")

    def to_file_url(self, body):
        self.send(302, "text/plain", b"", extra=[("location", "file:///etc/passwd")])

    def log_message(self, *args):
        pass


def status(code):
    return lambda handler, body: handler.send(code, "application/json", b'{"message": "no"}')


@pytest.fixture
def hostile():
    with http_server(Hostile) as server:
        server.mode, server.body, server.files, server.endpoint, server.seen, server.ranges = "whole", GOOD, {}, {}, [], True
        yield server


@pytest.fixture
def together_run(ftm_home, chat_file, monkeypatch):
    """A succeeded Together run (trained on the stand-in), whose pulls then go to a hostile server."""
    with together_standin(speed=40) as server:
        server.service.phases.update(FAST)
        monkeypatch.setenv("TOGETHER_BASE_URL", server.base_url)
        monkeypatch.setenv("TOGETHER_API_KEY", "tg-doors")
        monkeypatch.setenv("FTM_POLL_SCALE", "0.02")
        run = ftm("submit", chat_file, "-b", "together", "-m", MODEL, "--epochs", "1", "--wait", "--json")
    assert run.code == 0, run
    monkeypatch.setenv("FTM_DOWNLOAD_STALL", "0.5")
    return run.json()


def pulled_nothing(ftm_home, run: dict, result) -> None:
    assert result.code == 1 and result.err.startswith("Error: "), result
    assert len(result.err.strip().splitlines()) == 1 and "Traceback" not in result.err, result
    assert ftm("show", run["id"], "--json").json()["result_path"] is None
    folder = ftm_home / "runs" / run["id"]
    assert not folder.exists() or list(folder.iterdir()) == [], list(folder.iterdir())


TOGETHER_FAULTS = {
    "401": (status(401), GOOD, "HTTP 401"),
    "404": (status(404), GOOD, "HTTP 404"),
    "500": (status(500), GOOD, "after 4 tries (HTTP 500)"),
    "empty": ("empty", GOOD, "sent .download.tar.zst empty"),
    "chunked garbage": ("chunked", GOOD, "not a readable tar archive"),
    "short": ("short", GOOD, "after 4 tries (peer closed connection without sending complete message body"),
    "stalled": ("stall", GOOD, "after 4 tries"),
    "dropped": ("drop", GOOD, "after 4 tries"),
    "html": ("html", GOOD, "with a web page (text/html)"),
    "not http": ("to_file_url", GOOD, "unsupported protocol"),
    "corrupt zstd": ("whole", b"\x28\xb5\x2f\xfd" + b"\x00garbage" * 64, "not a readable tar archive"),
    "empty tar": ("whole", b"\x00" * 700, "holds no model"),
    "plain garbage": ("whole", b"PK\x03\x04" + b"zip?" * 200, "not a readable tar archive"),
    "config a list": ("whole", archive({"a/adapter_config.json": b"[1, 2]", "a/adapter_model.safetensors": safetensors_bytes()}),
                      "adapter_config.json together sent is not a JSON object"),
    "weights no config": ("whole", archive({"a/adapter_model.safetensors": safetensors_bytes()}), "holds no model"),
    "config no weights": ("whole", archive({"a/adapter_config.json": CONFIG.encode()}), "but no weights"),
    "bad weights": ("whole", archive({"a/adapter_config.json": CONFIG.encode(), "a/adapter_model.safetensors": b"\xff" * 64}),
                    "not a readable safetensors file"),
    "300-char name": ("whole", archive({"a" * 300 + "/adapter_config.json": CONFIG.encode()}), "not a readable tar archive"),
    "dot names": ("whole", archive({".": b"x", "./": b"y"}), "not a readable tar archive"),
}


def test_a_misbehaving_together_download_is_one_line_and_leaves_nothing(together_run, hostile, ftm_home, monkeypatch):
    monkeypatch.setenv("TOGETHER_BASE_URL", hostile.url)
    for case, (mode, body, needle) in TOGETHER_FAULTS.items():
        hostile.mode, hostile.body = mode, body
        result = ftm("pull", together_run["id"], timeout=60)
        pulled_nothing(ftm_home, together_run, result)
        assert needle in result.err, (case, result)


def test_an_archive_that_unpacks_past_its_cap_is_stopped_and_removed(together_run, hostile, ftm_home, monkeypatch):
    monkeypatch.setenv("TOGETHER_BASE_URL", hostile.url)
    hostile.body = bomb(2 << 30)  # a few KB that would be 2 GB on disk
    assert len(hostile.body) < 256 << 10
    result = ftm("pull", together_run["id"], timeout=60)
    pulled_nothing(ftm_home, together_run, result)
    assert "unpacks to over 268435456 bytes (10 times the archive's size)" in result.err
    hostile.body = GOOD
    result = ftm("pull", together_run["id"], "--max-size", "100b", timeout=60)
    pulled_nothing(ftm_home, together_run, result)
    assert "past --max-size (100 bytes)" in result.err
    refused = ftm("pull", together_run["id"], "--max-size", "lots")
    assert refused.code == 1 and "--max-size must be a size such as 500MB" in refused.err
    assert ftm("pull", together_run["id"], "--max-size", "10MB").code == 0  # the cap is no obstacle to a good archive


@pytest.mark.parametrize("ranges", [True, False])
def test_a_dropped_download_resumes_where_it_stopped_when_the_server_allows(together_run, hostile, ftm_home,
                                                                          monkeypatch, ranges):
    monkeypatch.setenv("TOGETHER_BASE_URL", hostile.url)
    hostile.mode, hostile.ranges = "short_once", ranges
    result = ftm("pull", together_run["id"], "--json", timeout=60)
    assert result.code == 0, result
    assert [r for _, r in hostile.seen] == [None, f"bytes={len(GOOD) // 2}-"]  # asked for the rest ...
    home = ftm_home / "runs" / together_run["id"] / "adapter" / "adapter"
    assert result.json()["result_path"] == str(home)  # ... and got the whole, resumed or restarted
    assert (home / "adapter_config.json").read_text() == CONFIG
    assert sorted(p.name for p in home.parent.parent.iterdir()) == ["adapter"]


@pytest.fixture
def fireworks_run(ftm_home, chat_file, monkeypatch, tmp_path):
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(CONFIG)
    (adapter / "adapter_model.safetensors").write_bytes(safetensors_bytes())
    with fireworks_standin(speed=40, provider="fireworks", adapter=adapter) as srv:
        monkeypatch.setenv("FIREWORKS_BASE_URL", srv.url)
        monkeypatch.setenv("FIREWORKS_API_KEY", "fw-doors")
        monkeypatch.setenv("FIREWORKS_ACCOUNT_ID", "acme")
        monkeypatch.setenv("FTM_POLL_SCALE", "0.05")
        run = ftm("submit", chat_file, "--backend", "fireworks", "--wait", "--json")
    assert run.code == 0 and run.json()["status"] == "succeeded", run
    monkeypatch.setenv("FTM_DOWNLOAD_STALL", "0.5")
    return run.json()


def signed(hostile, names) -> dict:
    return {"filenameToSignedUrls": {name: f"{hostile.url}/files/{i}" for i, name in enumerate(names)}}


def test_a_misbehaving_fireworks_download_is_one_line_and_leaves_nothing(fireworks_run, hostile, ftm_home, monkeypatch):
    monkeypatch.setenv("FIREWORKS_BASE_URL", hostile.url)
    hostile.files = {"0": CONFIG.encode(), "1": safetensors_bytes()}
    good = ["adapter_config.json", "adapter_model.safetensors"]
    cases = {
        "html endpoint": (b"<html>Sign in</html>", "whole", "Fireworks"),
        "list endpoint": ([{"adapter_config.json": "x"}], "whole", "gives no files"),
        "no files": ({"filenameToSignedUrls": {}}, "whole", "gives no files"),
        "dot": (signed(hostile, ["."]), "whole", "named a file '.'"),
        "dot slash": (signed(hostile, ["./"]), "whole", "named a file './'"),
        "climbs": (signed(hostile, ["../up"]), "whole", "named a file '../up'"),
        "nul": (signed(hostile, ["a\0b"]), "whole", "named a file 'a\\x00b'"),
        "300 chars": (signed(hostile, ["n" * 300]), "whole", "named a file 'nnnn"),
        "file and folder": (signed(hostile, ["adapter_config.json", "adapter_config.json/x"]), "whole",
                            "'adapter_config.json' both a file and a folder"),
        "ftp link": ({"filenameToSignedUrls": {"adapter_config.json": "ftp://127.0.0.1/x"}}, "whole", "not http(s)"),
        "file link": ({"filenameToSignedUrls": {"adapter_config.json": "file:///etc/passwd"}}, "whole", "not http(s)"),
        "403": (signed(hostile, good), status(403), "HTTP 403"),
        "dropped": (signed(hostile, good), "drop", "after 4 tries"),
        "stalled": (signed(hostile, good), "stall", "after 4 tries"),
        "no config": (signed(hostile, ["x", "adapter_model.safetensors"]), "whole", "holds no model"),
    }
    for case, (endpoint, mode, needle) in cases.items():
        hostile.endpoint, hostile.mode = endpoint, mode
        result = ftm("pull", fireworks_run["id"], timeout=60)
        pulled_nothing(ftm_home, fireworks_run, result)
        assert needle in result.err, (case, result)
    hostile.endpoint, hostile.mode = signed(hostile, good), "whole"
    hostile.files["0"] = b'"a string"'
    result = ftm("pull", fireworks_run["id"], timeout=60)
    pulled_nothing(ftm_home, fireworks_run, result)
    assert "adapter_config.json fireworks sent is not a JSON object" in result.err
    hostile.files["0"] = CONFIG.encode()
    assert ftm("pull", fireworks_run["id"], timeout=60).code == 0
