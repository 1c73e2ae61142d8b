"""How fast does `ftm ui` answer on a big ledger, beside the naive way of reading it?

Builds bench_ledger's ledger (10,000 runs, 1,000,000 metric rows) plus one run of 100,000 steps,
then times the dashboard's API in process (Starlette's TestClient: the server's own time, no
network): the runs page (goal < 300 ms) beside loading every run as `ftm runs --json` does, and
a 100,000-point curve thinned by LTTB (goal < 1 s) beside sending every metric row.
Run: python bench/bench_ui.py [--runs 10000] [--steps 100] [--big 100000] [--repeat 7]
"""

from __future__ import annotations

import argparse
import json
import math
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_ledger import build  # noqa: E402  (the same ledger bench_ledger times the CLI on)

BIG = "run-big-curve"


def add_big_run(home: Path, steps: int) -> None:
    """One run of `steps` steps: a noisy falling loss with a spike, validation every 10 steps."""
    conn = sqlite3.connect(home / "ftm.db")
    stamp = "2026-11-24T12:00:00Z"
    conn.execute("INSERT INTO runs (id, backend, base_model, dataset_id, status, hyperparameters, total_steps,"
                 " created_at, updated_at) VALUES (?, 'local', 'm', ?, 'succeeded', '{\"n_epochs\": 3}', ?, ?, ?)",
                 [BIG, "d" * 64, steps, stamp, stamp])
    rows = ((BIG, s, 2 / math.log(s + 2) + 0.05 * math.sin(s) + (3.0 if s == steps // 3 else 0),
             min(1.0, s / steps), 2.1 / math.log(s + 2) if s % 10 == 0 else None) for s in range(1, steps + 1))
    conn.executemany("INSERT INTO metrics (run_id, step, train_loss, train_accuracy, valid_loss) VALUES (?, ?, ?, ?, ?)", rows)
    conn.commit()
    conn.close()


def timed(fn, repeat: int) -> tuple[float, int]:
    """Median seconds of fn() and the size of what it returned, in bytes."""
    times, size = [], 0
    for _ in range(repeat):
        start = time.perf_counter()
        size = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), size


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--big", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        t0 = time.perf_counter()
        build(home, args.runs, args.steps)
        add_big_run(home, args.big)
        print(f"ledger: {args.runs + 1:,} runs, {args.runs * args.steps + args.big:,} metric rows "
              f"(built in {time.perf_counter() - t0:.1f} s); one run of {args.big:,} steps")
        report(args.repeat)
        in_browser(home)


def report(repeat: int) -> None:
    from starlette.testclient import TestClient

    from ftmanager.ledger import ledger
    from ftmanager.ui import make_app

    client = TestClient(make_app(), base_url="http://127.0.0.1")

    def get(path):
        def fn():
            response = client.get(path)
            assert response.status_code == 200, response.text
            return len(response.content)
        return fn

    ids = ",".join(f"run-{i:08x}" for i in range(100))
    cases = [
        ("runs page (100 newest of all)", get("/api/runs"), 0.3),
        ("runs page filtered, sorted by cost", get("/api/runs?backend=local&status=succeeded&sort=cost&desc=0"), 0.3),
        ("runs page filtered by method", get("/api/runs?method=qlora&sort=duration"), 0.3),
        ("filter choices (facets)", get("/api/facets"), 0.3),
        ("live status of 100 runs", get(f"/api/status?ids={ids}"), 0.3),
        ("naive: every run as `ftm runs --json`", lambda: len(json.dumps(ledger().runs(), default=str)), None),
        (f"curves of {BIG} (LTTB to 1,000)", get(f"/api/runs/{BIG}/curves"), 1.0),
        ("naive: every metric row of it", lambda: len(json.dumps(ledger().metrics(BIG))), None),
        (f"run page of {BIG}", get(f"/api/runs/{BIG}"), 1.0),
    ]
    print(f"{'request':<42} {'median ms':>10} {'bytes':>11}  goal")
    for label, fn, goal in cases:
        seconds, size = timed(fn, repeat)
        verdict = "" if goal is None else (f"< {goal * 1000:.0f} ms " + ("ok" if seconds < goal else "OVER"))
        print(f"{label:<42} {seconds * 1000:>10.1f} {size:>11,}  {verdict}")
    curve = client.get(f"/api/runs/{BIG}/curves").json()["series"]["train_loss"]
    spike = max(curve["y"])
    print(f"train_loss: {curve['n']:,} points drawn as {len(curve['x']):,}; the spike ({spike:.2f}) kept: "
          f"{'yes' if spike > 3 else 'NO'}")


def in_browser(home: Path) -> None:
    """Wall time from opening a page in chromium to its table or chart drawn (skipped without one)."""
    import os
    import shutil
    import subprocess

    chromium = shutil.which("chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        chromium = None
    if not chromium:
        print("browser: skipped (needs Debian's chromium and playwright)")
        return
    proc = subprocess.Popen([sys.executable, "-m", "ftmanager", "ui", "--port", "0", "--no-browser", "--sync", "0"],
                            env={**os.environ, "FTM_HOME": str(home)}, stdout=subprocess.PIPE, text=True)
    url = proc.stdout.readline().split(" on ")[1].split()[0]
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1300, "height": 900})
            for label, fragment, ready in (("runs page, 100 of 10,001 runs", "#/runs", "#runs tbody tr"),
                                           (f"run page, {BIG} curves drawn", f"#/run/{BIG}", ".chart[data-title=Loss] canvas")):
                times = []
                for _ in range(3):
                    page.goto("about:blank")
                    start = time.perf_counter()
                    page.goto(url + fragment)
                    page.locator(ready).first.wait_for()
                    times.append(time.perf_counter() - start)
                print(f"browser: {label:<36} {statistics.median(times) * 1000:>8.0f} ms (open to drawn, median of 3)")
            browser.close()
    finally:
        proc.terminate()
        proc.wait()


if __name__ == "__main__":
    main()
