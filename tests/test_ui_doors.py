"""`ftm ui` against hostile input and hostile neighbours: script in every untrusted text (run
names, dataset names and text, model answers, a provider's error), another site posting to it,
a DNS-rebound Host, a visitor off loopback without the key, and a damaged or read-only FTM_HOME."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import httpx
import pytest

from conftest import http_server
from ui_browser import browser_session, home_env, require_browser, run_ftm, serving

require_browser()

PAYLOADS = ['<script>window.pwned=1;alert("script")</script>', '"><img src=x onerror="window.pwned=2;alert(2)">',
            "<svg onload=alert(3)>", "javascript:alert(4)", "' onmouseover='alert(5)"]
XSS = " ".join(PAYLOADS)


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    """A ledger whose every text carries the payloads: dataset name and text, run names, answers, errors."""
    tmp = tmp_path_factory.mktemp("doors")
    env = home_env(tmp)
    rows = [{"messages": [{"role": "user", "content": f"Question {i} {XSS}"},
                          {"role": "assistant", "content": f"Answer {i} {XSS}"}]} for i in range(12)]
    data = tmp / "data.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    runs = [json.loads(run_ftm(env, "submit", data, "-b", "fake", "--suffix", p[:64], "--wait", "--json").stdout)
            for p in PAYLOADS[:2]]
    run_ftm(env, "datasets", "add", data, "--name", PAYLOADS[1][:60])
    held = tmp / "held.jsonl"
    held.write_text("".join(json.dumps(r) + "\n" for r in rows[:2]))
    run_ftm(env, "eval", runs[0]["id"], runs[1]["id"], "--data", held)
    failed = json.loads(run_ftm(env, "submit", data, "-b", "fake", "--model", "fake-slow", "--json").stdout)
    _provider_says(env, failed["id"], XSS)
    return {"env": env, "runs": [r["id"] for r in runs], "failed": failed["id"], "tmp": tmp}


def _provider_says(env: dict, run_id: str, message: str) -> None:
    """A hostile provider's poll: the run failed, with markup for an error message (recorded as
    jobs.py records any poll)."""
    code = ("import sys; from ftmanager.ledger import Ledger; from ftmanager.backend import Progress, Event;"
            "Ledger().record(sys.argv[1], Progress(status='failed', error={'code': 'x', 'message': sys.argv[2]},"
            " events=[Event('evil-1', 0, sys.argv[2])]))")
    subprocess.run([sys.executable, "-c", code, run_id, message], env=env, check=True)


@pytest.fixture(scope="module")
def site(hostile):
    """One `ftm ui` over the hostile ledger for the tests that need no other flags."""
    with serving(hostile["env"], "--sync", "0") as (url, _):
        yield url


@pytest.fixture(scope="module")
def browser():
    with browser_session() as b:
        yield b


@pytest.fixture
def page(browser):
    page = browser.new_page()
    yield page
    page.context.close()


def _inert(page) -> None:
    """Nothing of a payload ran or became markup: no dialog, no flag, no injected element."""
    assert page.evaluate("window.pwned") is None
    assert page.evaluate("document.querySelectorAll('main img, main svg, main script, #banner *').length") == 0
    assert page.problems == []


def test_markup_in_every_untrusted_text_is_shown_as_text_and_never_runs(hostile, site, page):
    url = site
    a, b = hostile["runs"]
    views = [("#/runs", PAYLOADS[0][:64]), (f"#/run/{a}", "Answer 0 <script>"), (f"#/run/{hostile['failed']}", XSS),
             (f"#/compare?ids={a},{b}", "Question 1 <script>"), ("#/datasets", PAYLOADS[1][:60]),
             ("#/models", "fake:")]
    for fragment, shown in views:
        page.goto(url + fragment)
        page.wait_for_function("arg => document.querySelector('main').innerText.includes(arg)", arg=shown)
        page.mouse.move(300, 300)
        _inert(page)
    page.goto(url + "#/datasets")
    page.get_by_role("link", name=PAYLOADS[1][:60], exact=True).click()
    page.locator("#histogram").wait_for()
    assert page.locator("#dataset-name").inner_text() == PAYLOADS[1][:60]
    assert page.locator("#examples .text").first.inner_text() == "Question 0 " + XSS
    _inert(page)
    page.goto(url + "#/models")
    page.fill("#prompt", "Question 3 " + XSS)
    page.locator("#send").click()
    page.wait_for_function("document.querySelectorAll('#panels .answer').length === 2")
    assert page.locator("#panels .answer").first.inner_text() == "Answer 3 " + XSS
    _inert(page)


def test_the_pages_forbid_inline_script_and_framing(hostile, site):
    url = site
    for path in ("", "api/health", "static/app.js", "no/such/page"):
        headers = httpx.get(url + path).headers
        assert "script-src 'self'" in headers["content-security-policy"], path
        assert headers["x-frame-options"] == "DENY" and headers["x-content-type-options"] == "nosniff"


class _EvilSite(BaseHTTPRequestHandler):
    """Another origin's page that tries to cancel a run behind the user's back."""
    target = ""

    def do_GET(self):
        body = f"""<!doctype html><form id=f method=post action="{self.target}" enctype="text/plain">
<input name='{{"x":"' value='"}}'></form><script>
fetch("{self.target}", {{method: "POST", mode: "no-cors", headers: {{"content-type": "text/plain"}}, body: "{{}}"}})
  .finally(() => document.getElementById("f").submit());</script>""".encode()
        self.send_response(200)
        self.send_header("content-type", "text/html")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_another_site_cannot_cancel_a_run(hostile, site, browser):
    env = hostile["env"]
    slow = json.loads(run_ftm(env, "submit", hostile["tmp"] / "held.jsonl", "-b", "fake", "--model", "fake-slow",
                              "--suffix", "keep me", "--json").stdout)
    url = site
    target = _EvilSite.target = f"{url}api/runs/{slow['id']}/cancel"
    with http_server(_EvilSite) as evil:
        page = browser.new_page()
        page.goto(f"http://localhost:{evil.server_address[1]}/")
        page.wait_for_url(f"{url}api/runs/{slow['id']}/cancel")
        assert "cross-site request was refused" in page.locator("body").inner_text()
        page.context.close()
    forged = [httpx.post(target, json={}, headers={"origin": "http://evil.example"}),
              httpx.post(target, json={}, headers={"origin": "null"}),
              httpx.post(target, json={}, headers={"sec-fetch-site": "cross-site"}),
              httpx.post(target, json={})]
    for response in forged:
        assert response.status_code == 403 and "cross-site" in response.json()["error"]["message"]
    own = httpx.post(target, content=b"{}", headers={"origin": url.rstrip("/"), "content-type": "text/plain"})
    assert own.status_code == 415  # even from its own origin, a body a form could send is refused
    shown = json.loads(run_ftm(env, "show", slow["id"], "--json").stdout)
    assert shown["status"] != "cancelled" and "cancel requested" not in json.dumps(shown["events"])


def test_a_rebound_host_name_is_refused(hostile, site):
    url = site
    response = httpx.get(url + "api/runs", headers={"host": "attacker.example"})
    assert response.status_code == 403 and "runs" not in response.json()
    assert httpx.get(url.replace("127.0.0.1", "localhost") + "api/health").status_code == 200


def test_off_loopback_the_key_is_asked_once_and_kept_in_a_strict_http_only_cookie(hostile, browser):
    with serving(hostile["env"], "--host", "0.0.0.0", "--key", "s3cret-key", "--sync", "0") as (url, lines):
        url = url.replace("0.0.0.0", "127.0.0.1")
        assert "s3cret-key" not in "".join(lines)
        answer = httpx.get(url + "api/runs")
        assert answer.status_code == 401 and len(answer.text.splitlines()) == 1
        page = browser.new_page()
        page.goto(url + "#/runs")
        assert page.url.split("#")[0].endswith("/login")
        page.fill("input[name=key]", "wrong")
        page.locator("button[type=submit]").click()
        assert "not the key" in page.locator("main").inner_text()
        page.fill("input[name=key]", "s3cret-key")
        page.locator("button[type=submit]").click()
        page.locator("#runs tbody tr").first.wait_for()
        [cookie] = page.context.cookies()
        assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and "s3cret" not in cookie["value"]
        assert page.evaluate("document.cookie") == ""
        assert page.problems == []
        page.context.close()


def test_api_errors_are_one_json_line_without_paths(hostile, site):
    url = site
    own = {"origin": url.rstrip("/")}
    answers = [httpx.get(url + "api/runs/run-nosuch"), httpx.get(url + "api/runs?sort=evil"),
               httpx.get(url + "api/runs?limit=lots"), httpx.get(url + "api/runs/run-nosuch/curves"),
               httpx.get(url + f"api/runs/{hostile['runs'][0]}/curves?points=many"),
               httpx.get(url + "api/compare?ids=" + ",".join(["x"] * 21)),
               httpx.get(url + "api/datasets/nosuch"), httpx.get(url + "api/compare?ids=one"),
               httpx.post(url + "api/chat", content=b"{not json", headers={**own, "content-type": "application/json"}),
               httpx.post(url + "api/chat", json={"run": hostile["runs"][0], "messages": "hi"}, headers=own),
               httpx.post(url + f"api/runs/{hostile['runs'][0]}/explode", json={}, headers=own),
               httpx.post(url + f"api/runs/{hostile['runs'][0]}/cancel", json={}, headers=own)]
    for answer in answers:
        assert 400 <= answer.status_code < 500, (answer.request.url, answer.text)
        message = answer.json()["error"]["message"]
        assert len(answer.text.splitlines()) == 1 and "Traceback" not in answer.text
        assert str(hostile["tmp"]) not in message and message.endswith("."), message


def _garbage_ledger(home: Path) -> None:
    home.mkdir(parents=True)
    (home / "ftm.db").write_bytes(b"this is not a database" * 100)


@pytest.mark.parametrize("damage, said", [(_garbage_ledger, "Error: the ledger"),
                                          (lambda home: home.write_text("a file"), "Error: cannot create")])
def test_a_damaged_home_shows_one_clear_message(tmp_path, browser, damage, said):
    env = home_env(tmp_path)
    damage(Path(env["FTM_HOME"]))
    with serving(env, "--sync", "0") as (url, _):
        page = browser.new_page()
        page.goto(url)
        page.locator("#banner").wait_for()
        text = page.locator("body").inner_text()
        assert page.locator("#banner").inner_text().startswith(said)
        assert "Traceback" not in text and len(page.locator("#banner").inner_text().splitlines()) == 1
        assert page.locator("main").inner_text() == ""
        page.context.close()
        answer = httpx.get(url + "api/runs")
        assert answer.status_code == 503 and len(answer.text.splitlines()) == 1


def _without_root_powers() -> tuple:
    """Root ignores file modes: drop its DAC override so a read-only home really is read-only."""
    if os.geteuid() != 0:
        return ()
    caps = "-dac_override,-dac_read_search"
    return ("setpriv", "--bounding-set", caps, "--inh-caps", caps)


def test_a_read_only_home_is_browsed_and_its_buttons_refuse_in_one_line(hostile, browser, tmp_path):
    env = home_env(tmp_path)  # a home of its own: no other server holds this ledger open
    home = Path(env["FTM_HOME"])
    live = json.loads(run_ftm(env, "submit", hostile["tmp"] / "held.jsonl", "-b", "fake", "--model", "fake-slow",
                              "--json").stdout)
    subprocess.run(["chmod", "-R", "a-w", str(home)], check=True)
    try:
        with serving(env, "--sync", "0", prefix=_without_root_powers()) as (url, _):
            page = browser.new_page()
            page.goto(f"{url}#/run/{live['id']}")
            page.locator("#run-status").wait_for()
            assert "can only be read" in page.locator("#banner").inner_text()
            assert page.locator("button[data-action]").count() == 0  # the banner says why
            assert page.problems == []
            page.context.close()
            refused = httpx.post(f"{url}api/runs/{live['id']}/cancel", json={}, headers={"origin": url.rstrip("/")})
            assert refused.status_code == 503 and "read-only" in refused.json()["error"]["message"]
            assert len(refused.text.splitlines()) == 1
    finally:
        subprocess.run(["chmod", "-R", "u+w", str(home)], check=True)


def test_a_chain_naming_a_missing_or_hostile_run_is_shown_as_text(hostile, site, page):
    env = hostile["env"]
    hostile_link, gone = (json.loads(run_ftm(env, "submit", hostile["tmp"] / "held.jsonl", "-b", "fake", "--wait",
                                             "--json").stdout)["id"] for _ in range(2))
    with sqlite3.connect(Path(env["FTM_HOME"]) / "ftm.db") as db:  # only a hand-edited ledger says these
        db.execute("UPDATE runs SET status = 'queued', provider_job_id = NULL, base_run_id = ? WHERE id = ?",
                   [PAYLOADS[1], hostile_link])
        db.execute("UPDATE runs SET base_run_id = ? WHERE id = ?", [gone[:6], gone])  # a deleted run, and a prefix
    for run, base in ((hostile_link, PAYLOADS[1]), (gone, gone[:6])):
        page.goto(f"{site}#/run/{run}")
        page.locator("#on-top-of").wait_for()
        assert page.locator("#on-top-of").inner_text() == f"{base} (deleted)"
        assert page.locator("#on-top-of a").count() == 0
        page.mouse.move(300, 300)
        _inert(page)
    page.goto(f"{site}#/run/{hostile_link}")
    assert page.locator("#waiting-for").inner_text() == f"waiting for {PAYLOADS[1]} to succeed"
    _inert(page)
