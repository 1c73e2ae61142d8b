"""What the dashboard's browser tests share: `ftm ui` as a real process, Debian's chromium driven
by Playwright, and a page that remembers every console error and dialog it saw."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest

from conftest import PLUGINS, ROOT

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def require_browser():
    """Playwright's sync API, or a skip that says what is missing (CI has both)."""
    if not CHROMIUM:
        pytest.skip("Debian's chromium is not installed (apt-get install chromium; `make test` does it)",
                    allow_module_level=True)
    return pytest.importorskip("playwright.sync_api", reason="playwright is not installed (the dev extra has it)")


def home_env(tmp: Path) -> dict:
    """The environment of an ftm process over a fresh FTM_HOME beside the fake provider."""
    return {**os.environ, "FTM_HOME": str(tmp / "home"), "FTM_FAKE_DIR": str(tmp / "fake"),
            "PYTHONPATH": os.pathsep.join([str(PLUGINS), os.environ.get("PYTHONPATH", "")])}


def run_ftm(env: dict, *args, timeout: int = 300) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "ftmanager", *map(str, args)], env=env, capture_output=True,
                          text=True, timeout=timeout, cwd=ROOT)
    assert proc.returncode == 0, (args, proc.stdout[-2000:], proc.stderr[-2000:])
    return proc


@contextmanager
def serving(env: dict, *flags, prefix: tuple = ()):
    """`ftm ui --port 0 --no-browser FLAGS` as a real process; yields the address it printed."""
    proc = subprocess.Popen([*prefix, sys.executable, "-m", "ftmanager", "ui", "--port", "0", "--no-browser", *flags],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        lines = []
        for line in proc.stdout:
            lines.append(line)
            found = re.search(r"on (http://\S+/) ", line)
            if found:
                yield found.group(1), lines
                break
        else:
            raise AssertionError(f"ftm ui printed no address: {lines} {proc.stderr.read()}")
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@contextmanager
def browser_session():
    """One chromium for a module; new_page() gives a page that records console errors and dialogs."""
    sync_api = require_browser()
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield Browser(browser)
        finally:
            browser.close()


class Browser:
    def __init__(self, browser):
        self.browser = browser

    def new_page(self, **context_options):
        # bypass_csp: the tests' own probes evaluate strings; and a payload must stay inert through
        # the page's rendering alone, not only because the Content-Security-Policy blocks it.
        context = self.browser.new_context(viewport={"width": 1300, "height": 900}, bypass_csp=True, **context_options)
        page = context.new_page()
        page.problems = []  # console errors, uncaught exceptions and dialogs: none may happen
        page.on("console", lambda m: m.type == "error" and page.problems.append(f"console: {m.text}"))
        page.on("pageerror", lambda e: page.problems.append(f"pageerror: {e}"))
        page.on("dialog", lambda d: (page.problems.append(f"dialog: {d.message}"), d.dismiss()))
        page.set_default_timeout(15_000)
        return page
