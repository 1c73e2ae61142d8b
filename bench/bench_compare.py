"""`ftm compare` on big runs, and `ftm eval`'s batched generation against one prompt at a time.

1. A ledger with 10 runs of 100,000 metric rows each: `ftm compare` of all 10 as a whole
   process (goal: under 1 s), beside `python -c pass` and beside loading every metric row into
   Python first (what a naive compare does).
2. Held-out prompts answered by SmolLM2-135M-Instruct through the local backend: one batched
   generate() call (what `ftm eval` does) against one call per prompt, prompts per second.
   Skipped with --no-generate (it needs the [local] extra and SmolLM2).

Run: python bench/bench_compare.py [--steps 100000] [--prompts 24] [--no-generate]
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def build(home: Path, n_runs: int, steps: int) -> list[str]:
    os.environ["FTM_HOME"] = str(home)
    from ftmanager.ledger import Ledger

    Ledger().close()
    conn = sqlite3.connect(home / "ftm.db")
    conn.execute("INSERT INTO datasets (id, name, n_examples) VALUES (?, 'bench', 100)", ["d" * 64])
    ids = [f"run-{i:08x}" for i in range(n_runs)]
    for i, run_id in enumerate(ids):
        hp = json.dumps({"n_epochs": 3, "batch_size": 8, "learning_rate_multiplier": 1 + i % 3})
        conn.execute("INSERT INTO runs (id, backend, base_model, dataset_id, status, hyperparameters, total_steps,"
                     " created_at, started_at, finished_at) VALUES (?, 'local', 'm', ?, 'succeeded', ?, ?,"
                     " '2026-11-23T10:00:00Z', '2026-11-23T10:00:00Z', '2026-11-23T11:00:00Z')",
                     [run_id, "d" * 64, hp, steps])
        conn.executemany("INSERT INTO metrics (run_id, step, train_loss, train_accuracy, valid_loss)"
                         " VALUES (?, ?, ?, ?, ?)",
                         ((run_id, s, 3.0 / s ** 0.3, min(1, s / steps), 3.1 / s ** 0.3 if s % 100 == 0 else None)
                          for s in range(1, steps + 1)))
    conn.commit()
    return ids


def timed(cmd: list[str], env: dict, repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


NAIVE = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1])
for run_id in sys.argv[2:]:
    rows = conn.execute("SELECT * FROM metrics WHERE run_id = ? ORDER BY step", [run_id]).fetchall()
    final, best = rows[-1][2], min(r[2] for r in rows)
"""


def compare_bench(steps: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        ids = build(home, 10, steps)
        env = {**os.environ, "FTM_HOME": str(home)}
        floor = timed([sys.executable, "-c", "pass"], env)
        ours = timed([sys.executable, "-m", "ftmanager", "compare", *ids], env)
        naive = timed([sys.executable, "-c", NAIVE, str(home / "ftm.db"), *ids], env)
        print(f"compare 10 runs x {steps:,} metric rows ({(home / 'ftm.db').stat().st_size / 1e6:.0f} MB ledger)")
        print(f"  python -c pass (floor)              {floor:7.3f} s")
        print(f"  ftm compare (whole process)         {ours:7.3f} s   goal < 1 s: {'ok' if ours < 1 else 'OVER'}")
        print(f"  naive: load every row, then reduce  {naive:7.3f} s   ({naive / ours:.1f}x ftm)")


def generate_bench(n_prompts: int) -> None:
    """The same loaded model either way (the process's model pool): only batching differs."""
    from ftm_backends.local import LocalBackend

    rows = [json.loads(line) for line in (ROOT / "examples" / "capitals_heldout.jsonl").open()]
    prompts = ([r["messages"][:-1] for r in rows] * (n_prompts // len(rows) + 1))[:n_prompts]
    generate = LocalBackend().generate
    generate(None, None, None, prompts[:2], 4)  # warm up
    start = time.perf_counter()
    batched_out = generate(None, None, None, prompts, 24)
    batched = time.perf_counter() - start
    start = time.perf_counter()
    single_out = [generate(None, None, None, [p], 24)[0] for p in prompts]
    single = time.perf_counter() - start
    same = sum(a == b for a, b in zip(batched_out, single_out))
    print(f"generate {n_prompts} held-out prompts with SmolLM2-135M-Instruct (24 new tokens, greedy, CPU, loaded once)")
    print(f"  batched (ftm eval)    {n_prompts / batched:7.2f} prompts/s")
    print(f"  one at a time         {n_prompts / single:7.2f} prompts/s   (batched is {single / batched:.1f}x)")
    print(f"  identical answers     {same}/{n_prompts}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=100_000)
    parser.add_argument("--prompts", type=int, default=24)
    parser.add_argument("--no-generate", action="store_true")
    args = parser.parse_args()
    home = os.environ.get("FTM_HOME")
    compare_bench(args.steps)
    if home:  # the model cache of the caller's FTM_HOME, not the bench ledger's (gone by now)
        os.environ["FTM_HOME"] = home
    if not args.no_generate:
        generate_bench(args.prompts)


if __name__ == "__main__":
    main()
