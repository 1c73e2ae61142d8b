"""How fast do `ftm runs`, `ftm show RUN` and `ftm --help` start, against a big ledger?

Builds a ledger of 10,000 runs and 1,000,000 metric rows (100 steps a run), then times each
command as a whole process (median of N runs) beside `python -c pass`, the floor any Python
CLI pays. Run: python bench/bench_ledger.py [--runs 10000] [--steps 100] [--repeat 7]
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def build(home: Path, n_runs: int, steps: int) -> str:
    """Fill a fresh ledger through ftm's own migrations, then bulk-insert rows."""
    os.environ["FTM_HOME"] = str(home)
    from ftmanager.ledger import Ledger

    Ledger().close()
    conn = sqlite3.connect(home / "ftm.db")
    conn.execute("INSERT INTO datasets (id, name, n_examples) VALUES (?, 'bench', 100)", ["d" * 64])
    stamp = "2026-11-23T12:00:00Z"
    conn.executemany(
        "INSERT INTO runs (id, backend, base_model, dataset_id, status, hyperparameters, created_at, updated_at)"
        " VALUES (?, ?, 'gpt-4o-mini-2024-07-18', ?, 'succeeded', '{}', ?, ?)",
        [(f"run-{i:08x}", "openai" if i % 2 else "local", "d" * 64, stamp, stamp) for i in range(n_runs)],
    )
    conn.executemany(
        "INSERT INTO metrics (run_id, step, train_loss, train_accuracy) VALUES (?, ?, ?, ?)",
        ((f"run-{i:08x}", s, 2.0 / s, s / steps) for i in range(n_runs) for s in range(1, steps + 1)),
    )
    conn.commit()
    return f"run-{n_runs // 2:08x}"


def timed(cmd: list[str], repeat: int, env: dict) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        t0 = time.perf_counter()
        run_id = build(home, args.runs, args.steps)
        print(f"ledger: {args.runs:,} runs, {args.runs * args.steps:,} metric rows "
              f"({(home / 'ftm.db').stat().st_size / 1e6:.0f} MB, built in {time.perf_counter() - t0:.1f} s)")
        env = {**os.environ, "FTM_HOME": str(home)}
        ftm = [sys.executable, "-m", "ftmanager"]
        cases = [
            ("python -c pass (floor)", [sys.executable, "-c", "pass"]),
            ("ftm --help", [*ftm, "--help"]),
            ("ftm runs", [*ftm, "runs"]),
            ("ftm runs --all (all 10k)", [*ftm, "runs", "--all"]),
            ("ftm runs --json", [*ftm, "runs", "--json"]),
            (f"ftm show {run_id}", [*ftm, "show", run_id]),
            (f"ftm show {run_id} --json", [*ftm, "show", run_id, "--json"]),
        ]
        floor = None
        print(f"{'command':<36} {'median s':>9} {'vs floor':>9}  goal < 0.300 s")
        for label, cmd in cases:
            seconds = timed(cmd, args.repeat, env)
            floor = floor or seconds
            verdict = "" if label.startswith("python") else ("ok" if seconds < 0.3 else "OVER")
            print(f"{label:<36} {seconds:>9.3f} {seconds / floor:>8.1f}x  {verdict}")
        heavy = subprocess.run(
            [sys.executable, "-c", "import sys, ftmanager.cli as c; sys.argv=['ftm','runs'];"
             "\ntry: c.main()\nexcept SystemExit: pass\n"
             "print(sorted(m for m in ('torch','transformers','peft','openai','numpy','sqlite_utils') if m in sys.modules))"],
            env=env, capture_output=True, text=True).stdout.strip().splitlines()[-1]
        print(f"heavy modules imported by `ftm runs`: {heavy}")


if __name__ == "__main__":
    main()
