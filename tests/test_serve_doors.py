"""The doors of `ftm serve`, tried through real sockets: what a hostile or broken client can do.

Every request here either gets a JSON error in OpenAI's shape (no paths, no exception text)
or costs the server nothing: bodies are not read before the key, oversized declared bodies
are refused unread, dropped and half-open connections hold no thread and spin no core.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time

import httpx
import openai
import pytest

from ftmanager.standin import standin
from ftmanager.serve import serve

KEY = "sk-doors-test-key"
AUTH = f"Authorization: Bearer {KEY}\r\n"


@pytest.fixture
def server(ftm_home):
    with serve(port=0, api_key=KEY, max_file_bytes=4096, max_part_bytes=2048) as srv:
        yield srv


def address(srv) -> tuple[str, int]:
    host, port = srv.url.split("//")[1].split("/")[0].split(":")
    return host, int(port)


def raw(srv, data: bytes, wait: float = 5.0) -> bytes:
    """Send bytes on a fresh connection; everything the server answers before closing or wait."""
    with socket.create_connection(address(srv), timeout=wait) as sock:
        sock.sendall(data)
        out = b""
        try:
            while chunk := sock.recv(65536):
                out += chunk
                if b"\r\n\r\n" in out and _complete(out):
                    break
        except socket.timeout:
            pass
    return out


def _complete(response: bytes) -> bool:
    head, _, body = response.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return len(body) >= int(line.split(b":")[1])
    return False


def status_and_json(response: bytes) -> tuple[int, dict]:
    head, _, body = response.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), json.loads(body)


def assert_openai_error(response: bytes, status: int) -> dict:
    code, body = status_and_json(response)
    assert code == status, response[:300]
    assert set(body["error"]) == {"message", "type", "param", "code"}
    text = json.dumps(body)
    assert "Traceback" not in text and "/work" not in text and ".py" not in text and "Error:" not in text
    return body["error"]


def post(path: str, body: bytes, *headers: str) -> bytes:
    extra = "".join(h + "\r\n" for h in headers)
    return (f"POST /v1{path} HTTP/1.1\r\nHost: x\r\n{AUTH}{extra}Content-Length: {len(body)}\r\n\r\n").encode() + body


def test_control_endpoints_exist_on_the_standin_only(server):
    for method, path, body in (("POST", "/_standin/config", {"max_file_bytes": 1}),
                               ("POST", "/_standin/faults", {"kind": "500"}), ("GET", "/_standin/requests", None)):
        answer = httpx.request(method, server.url.replace("/v1", path), json=body)
        # outside /v1 is the dashboard, behind the server's key: never a control answer
        assert answer.status_code in (303, 401, 403) and "max_file_bytes" not in answer.text, answer.text
    assert server.max_file_bytes == 4096 and server.hooks is None  # serve neither counts nor consults faults
    with standin() as stand:
        control = stand.url.replace("/v1", "/_standin")
        bad = httpx.post(f"{control}/faults", json={"kind": "500", "times": "x"})
        assert bad.status_code == 400  # a fault that would break every later request is refused
        assert httpx.get(f"{stand.url}/models", headers={"Authorization": "Bearer k"}).status_code == 200


def test_the_key_is_checked_before_a_byte_of_the_body_is_read(server):
    huge = b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 300000000\r\n\r\n{\"a\":"
    assert_openai_error(raw(server, huge), 401)
    form = (b"POST /v1/files HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n"
            b"Content-Length: 199000000\r\n\r\n--b\r\n")
    assert_openai_error(raw(server, form), 401)
    with_key = post("/files", b"--b\r\n", "Content-Type: multipart/form-data; boundary=b").replace(
        b"Content-Length: 5", b"Content-Length: 199000000")
    error = assert_openai_error(raw(server, with_key), 413)  # declared too long: refused unread
    assert error["code"] == "request_too_large"
    assert not [p for p in server.state.data_dir.iterdir() if p.is_file()]


def test_a_client_still_sending_a_refused_body_reads_its_answer(server):
    """Closing on an unread body sends a reset that can cost the client the 413 (seen: 8 of 20
    32 MB posts got a connection error): the server drops the rest and lets it read the answer."""
    for _ in range(10):
        refused = httpx.post(f"{server.url}/files", headers={"Authorization": f"Bearer {KEY}"},
                             files={"file": ("big.jsonl", b"x" * (32 << 20))}, data={"purpose": "fine-tune"})
        assert refused.status_code == 413 and refused.json()["error"]["code"] == "request_too_large"


def test_a_wrong_key_is_refused_and_never_echoed_whole(server):
    for key in ("sk-doors-test-kez", "x", "sk-doors-test-key-and-more"):
        with pytest.raises(openai.AuthenticationError) as err:
            openai.OpenAI(base_url=server.url, api_key=key, max_retries=0).models.list()
        assert key not in str(err.value) or len(key) <= 8


MALFORMED = [
    b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n" + AUTH.encode() + b"Content-Length: abc\r\n\r\n{}",
    b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n" + AUTH.encode() +
    b"Transfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n",
    b"GET /v1/models HTTP/1.1\r\nHost: x\r\n" + AUTH.encode() + b"Content-Length: 5\r\nContent-Length: 6\r\n\r\n",
    post("/chat/completions", b"[" * 100000 + b"]" * 100000),
    post("/chat/completions", json.dumps({"model": ["gpt-4o-mini"], "messages": [{"role": "user", "content": "a"}]}).encode()),
    post("/chat/completions", json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}],
                                          "stream": True, "stream_options": "yes"}).encode()),
    post("/chat/completions", json.dumps({"model": "gpt-4o-mini", "messages": [1, 2]}).encode()),
    post("/chat/completions", b'{"model": "gpt-4o-mini", "messages": "\xff\xfe"}'),
    post("/chat/completions", b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "n": 1e999}'),
    post("/chat/completions", json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": 5}]}).encode()),
    post("/chat/completions", json.dumps({"model": "gpt-4o-mini", "max_tokens": "9",
                                          "messages": [{"role": "user", "content": "hi"}]}).encode()),
    post("/fine_tuning/jobs", json.dumps({"model": "gpt-4o-mini", "training_file": "f",
                                          "method": ["supervised"]}).encode()),
    post("/fine_tuning/jobs", json.dumps({"model": "gpt-4o-mini", "training_file": "f",
                                          "method": {"type": "supervised", "supervised": {"hyperparameters": 3}}}).encode()),
    post("/uploads", json.dumps({"bytes": True, "filename": "a.jsonl", "purpose": "fine-tune"}).encode()),
    post("/files", b"--b\r\nnot a part", "Content-Type: multipart/form-data; boundary=b"),
    post("/files", b"x", "Content-Type: multipart/form-data"),
    b"GET /v1/fine_tuning/jobs?limit=99999999999999999999 HTTP/1.1\r\nHost: x\r\n" + AUTH.encode() + b"\r\n",
]


@pytest.mark.parametrize("request_bytes", MALFORMED, ids=range(len(MALFORMED)))
def test_each_malformed_request_gets_a_json_400_in_openais_shape(server, request_bytes):
    assert_openai_error(raw(server, request_bytes), 400)
    assert httpx.get(f"{server.url}/models", headers={"Authorization": f"Bearer {KEY}"}).status_code == 200


def test_a_chunked_body_cut_mid_chunk_spins_nothing(server):
    start = time.process_time()
    for _ in range(2):
        with socket.create_connection(address(server)) as sock:
            sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                         b"Content-Type: application/json\r\n" + AUTH.encode() + b"\r\n100\r\n{\"model\": ")
    time.sleep(3)
    assert time.process_time() - start < 0.3  # two spinning handlers take seconds of CPU here


def test_half_open_connections_hold_no_thread_and_are_closed(server, monkeypatch):
    from ftmanager.front import http

    monkeypatch.setattr(http, "HEAD_TIMEOUT", 1.0)
    threads = threading.active_count()
    socks = [socket.create_connection(address(server)) for _ in range(100)]
    try:
        for s in socks[:50]:
            s.sendall(b"GET /v1/models HTTP/1.1\r\nHost: x\r\n")  # a head never finished
        ok = httpx.get(f"{server.url}/models", headers={"Authorization": f"Bearer {KEY}"}, timeout=5)
        assert ok.status_code == 200
        assert threading.active_count() <= threads + 2
        time.sleep(1.5)
        for s in socks:
            s.settimeout(2)
            assert s.recv(10) == b""  # closed by the server
    finally:
        for s in socks:
            s.close()


def test_an_aborted_upload_leaves_no_spool(server):
    def deleted_fds() -> int:
        fds = os.listdir("/proc/self/fd")
        return sum(1 for fd in fds if "(deleted)" in _link(fd))

    before = deleted_fds()
    with socket.create_connection(address(server)) as sock:
        head = post("/uploads/upload_x/parts", b"", "Content-Type: multipart/form-data; boundary=b")
        head = head.replace(b"Content-Length: 0", b"Content-Length: 3000")
        sock.sendall(head + b'--b\r\nContent-Disposition: form-data; name="data"; filename="d"\r\n\r\n' + b"x" * 1500)
    time.sleep(0.5)
    assert deleted_fds() <= before
    assert not [p for p in server.state.data_dir.iterdir() if p.is_file()]


def _link(fd: str) -> str:
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return ""


def test_uploads_refuse_repeated_or_odd_part_ids_and_expire(server):
    c = openai.OpenAI(base_url=server.url, api_key=KEY, max_retries=0)
    up = c.uploads.create(bytes=6, filename="a.jsonl", mime_type="text/jsonl", purpose="fine-tune")
    part = c.uploads.parts.create(up.id, data=b"abc").id
    for ids in ([part, part], [1, 2], "part"):
        answer = httpx.post(f"{server.url}/uploads/{up.id}/complete", json={"part_ids": ids},
                            headers={"Authorization": f"Bearer {KEY}"})
        assert answer.status_code == 400 and answer.json()["error"]["param"] == "part_ids"
    assert c.uploads.complete(up.id, part_ids=[part, c.uploads.parts.create(up.id, data=b"def").id]).status == "completed"
    server.state.upload_ttl = 3
    late = c.uploads.create(bytes=3, filename="b.jsonl", mime_type="text/jsonl", purpose="fine-tune")
    c.uploads.parts.create(late.id, data=b"abc")
    assert len(list(server.state.data_dir.glob("part-*"))) == 1
    time.sleep(4.1)
    with pytest.raises(openai.BadRequestError, match="expired"):
        c.uploads.parts.create(late.id, data=b"x")
    assert not list(server.state.data_dir.glob("part-*"))  # its parts went with it


def test_a_kept_alive_connection_answers_without_waiting_for_a_delayed_ack(server):
    """An answer goes out in two writes (head, body); without TCP_NODELAY the second waits for the
    client's delayed ACK, about 40 ms a request (22 requests a second on one connection)."""
    with httpx.Client(headers={"Authorization": f"Bearer {KEY}"}) as client:
        client.get(f"{server.url}/models").raise_for_status()
        started = time.perf_counter()
        for _ in range(50):
            client.get(f"{server.url}/models").raise_for_status()
        took = time.perf_counter() - started
    assert took < 1.0, f"50 requests on one connection took {took:.2f} s"
