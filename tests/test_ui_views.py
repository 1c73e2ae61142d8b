"""The dashboard's reads without a browser: LTTB keeps a curve's shape and extremes, the runs
page's SQL agrees with the library (method, filters, sorting), and serving it loads no model."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest

from conftest import ftm
from ftmanager.ui.downsample import lttb


def test_lttb_thins_a_long_curve_and_keeps_its_ends_and_extremes():
    xs = list(range(100_000))
    ys = [2 / math.log(x + 2) + 0.01 * math.sin(x) for x in xs]
    ys[33_333], ys[66_666] = 9.0, -1.0  # one spike up, one down: what a user must not miss
    kx, ky = lttb(xs, ys, 1000)
    assert 1000 <= len(kx) <= 1002 and kx == sorted(kx)
    assert (kx[0], kx[-1]) == (0, 99_999) and max(ky) == 9.0 and min(ky) == -1.0
    assert [ys[x] for x in kx] == ky
    assert lttb([1, 2, 3], [3.0, 2.0, 1.0], 1000) == ([1, 2, 3], [3.0, 2.0, 1.0])


def test_the_runs_page_filters_sorts_and_names_the_method_as_the_library_does(ftm_home, chat_file):
    from ftmanager import comparing
    from ftmanager.ledger import ledger
    from ftmanager.ledger_views import Views

    made = [ftm("submit", chat_file, "-b", "fake", "--epochs", str(n), "-p", f"note=n{n}", "--wait", "--json").json()
            for n in (1, 2)]
    book = ledger()
    with book.write() as db:  # runs as older ledgers and other backends hold them
        db["runs"].update(made[0]["id"], {"backend": "local", "options": json.dumps({"quantize": False}),
                                          "resolved_hyperparameters": json.dumps({"method": "dpo"})})
        db["runs"].update(made[1]["id"], {"options": json.dumps({"method": "full"}), "actual_cost": 1.5})
    views = Views(book)
    page = views.runs_page({})
    assert [r["method"] for r in page["runs"]] == [comparing.method(book.run(r["id"])) for r in page["runs"]]
    assert {r["method"] for r in page["runs"]} == {"lora", "full"}
    assert [r["id"] for r in views.runs_page({"method": "lora"})["runs"]] == [made[0]["id"]]
    assert views.runs_page({"backend": "fake", "status": "succeeded"})["total"] == 1
    assert views.runs_page({"since": "2000-01-01", "until": "2000-01-02"})["total"] == 0
    assert [r["id"] for r in views.runs_page({}, sort="cost", desc=True)["runs"]][0] == made[1]["id"]
    assert views.facets()["method"] == ["full", "lora"]
    with pytest.raises(Exception, match="cannot sort by"):
        views.runs_page({}, sort="created_at; DROP TABLE runs")
    with pytest.raises(Exception, match="no filter called"):
        views.runs_page({"1=1 OR status": "x"})


def test_serving_the_dashboard_loads_no_model_library(ftm_home, chat_file):
    ftm("submit", chat_file, "-b", "fake", "--wait")
    code = ("import sys; from starlette.testclient import TestClient; from ftmanager.ui import make_app;"
            "c = TestClient(make_app(), base_url='http://127.0.0.1');"
            "assert all(c.get(p).status_code == 200 for p in ('/', '/api/runs', '/api/facets', '/api/models', '/api/datasets'));"
            "print(sorted(m for m in ('torch', 'transformers', 'peft', 'openai') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_a_port_in_use_is_one_line(ftm_home):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        res = ftm("ui", "--port", taken.getsockname()[1], "--no-browser")
    assert res.code == 1 and res.err.startswith("Error: cannot listen on 127.0.0.1:") and len(res.err.splitlines()) == 1


def test_ftm_serve_answers_the_dashboard_at_its_root_beside_the_api(ftm_home):
    """One port: OpenAI's API under /v1 and the dashboard at /, the pages behind the server's key."""
    import httpx

    from ftmanager.serve import serve

    with serve(port=0, api_key="sk-serve", device="cpu") as server:
        root = server.url.removesuffix("/v1")
        with httpx.Client(base_url=root, timeout=30) as client:
            assert client.get("/v1/models").status_code == 401  # the API still wants its key
            assert client.get("/v1/models", headers={"authorization": "Bearer sk-serve"}).status_code == 200
            assert client.get("/api/health").status_code == 401  # so do the pages: they can cancel runs
            login = lambda key: client.post("/login", data={"key": key}, headers={"origin": root})  # noqa: E731
            assert login("wrong").headers["location"] == "/login?failed"
            assert login("sk-serve").headers["location"] == "/"
            assert client.get("/api/health").json()["runs"] == 0
            assert "/static/app.js" in client.get("/").text
            assert client.get("/static/uPlot.iife.min.js").status_code == 200
            assert client.post("/api/chat", json={}, headers={"origin": "http://evil.example"}).status_code == 403
            assert client.get("/v1/nothing-here", headers={"authorization": "Bearer sk-serve"}).json()["error"]


def test_the_page_scripts_never_write_markup_from_strings():
    """The rule the XSS tests check from outside, checked at its source: text goes in as text."""
    from ftmanager.ui.app import STATIC

    ours = [p for p in STATIC.glob("*.js") if not p.name.startswith("uPlot")]
    assert len(ours) >= 4
    for path in ours:
        code = path.read_text()
        for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"):
            assert sink not in code, (path.name, sink)
