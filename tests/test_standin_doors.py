"""The stand-ins' doors, tried by a hostile client: a key guards every route, control ones included,
under every spelling of their path; Together's stand-in refuses a job with no training file as
Together does.
"""

from __future__ import annotations

import json
import socket

import httpx
import pytest

from ftmanager.standin import standin

KEY = "sk-standin-doors-key"
SPELLINGS = ["/_standin/faults", "/%5fstandin/faults", "/%5Fstandin/faults", "//_standin/faults",
             "/_STANDIN/faults", "/_standin./faults", "/_standin/faults.", "/%255fstandin/faults",
             "///_StAnDiN//faults"]
FAULT = json.dumps({"kind": "500", "method": "GET", "path": "/models"}).encode()


def send(srv, method: str, path: str, body: bytes = b"", key: str | None = None) -> tuple[int, bytes]:
    """One raw request (the path exactly as written: no client tidies it); the status and body."""
    host, port = srv.url.split("//")[1].split("/")[0].split(":")
    auth = f"Authorization: Bearer {key}\r\n" if key else ""
    head = (f"{method} {path} HTTP/1.1\r\nHost: x\r\n{auth}Content-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode()
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(head + body)
        out = b""
        while chunk := sock.recv(65536):
            out += chunk
    status = int(out.split(b" ", 2)[1])
    return status, out.partition(b"\r\n\r\n")[2]


@pytest.mark.parametrize("provider", ["openai", "together", "fireworks", "azure"])
def test_control_routes_need_the_key_under_every_spelling(provider):
    with standin(provider=provider, api_key=KEY) as srv:
        for path in SPELLINGS:
            for method, body in (("POST", FAULT), ("GET", b""), ("DELETE", b"")):
                status, answer = send(srv, method, path, body)
                assert status == 401, (provider, method, path, status, answer)
        assert srv.faults.pending() == []  # no fault was queued by a client without the key
        status, _ = send(srv, "GET", "/_standin/requests", key="sk-wrong-key-1234")
        assert status == 401
        status, answer = send(srv, "POST", "/%5fstandin/faults", FAULT, key=KEY)
        assert status == 200 and json.loads(answer)["faults"], answer


def test_control_routes_stay_open_without_a_key():
    with standin() as srv:
        status, answer = send(srv, "GET", "/_standin/requests")
        assert status == 200 and "total" in json.loads(answer)


@pytest.mark.parametrize("path", ["/fine-tunes", "/fine-tunes/estimate-price"])
@pytest.mark.parametrize("training_file", [None, "", 7, ["file-1"]])
def test_together_refuses_a_job_without_a_training_file(path, training_file):
    with standin(provider="together") as srv:
        body = {"model": "meta-llama/Meta-Llama-3.1-8B-Instruct-Reference", "n_epochs": 1}
        if training_file is not None:
            body["training_file"] = training_file
        answer = httpx.post(srv.url + path, json=body, headers={"Authorization": "Bearer k"})
        assert answer.status_code == 400, answer.text
        assert "training_file" in answer.text
