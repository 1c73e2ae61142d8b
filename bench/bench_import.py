"""`ftm import openai` beside a plain SDK loop, against the OpenAI stand-in holding an account's history.

The stand-in is seeded (ftmanager/standin/history.py) with N ended jobs of E events each (every
job on one training file and one validation file, three checkpoints each, as an account that
fine-tuned one dataset many times looks). Two readers, each in a fresh process:

  ftm     `ftmanager.adopting.import_history("openai")` into an empty FTM_HOME: every job becomes
          a run with all its events, metrics, checkpoints and data, in the ledger.
  plain   the openai SDK listing every job (every page), then for each job every page of its
          events, its checkpoints, and its two files (retrieve + content), kept in a list: what
          a script that "lists and retrieves everything once" does.

Reported per reader: API calls per job (the stand-in's request counts), wall seconds, and the
child's peak resident memory, for N and N/4 jobs (flat memory: the two peaks should match).
Then the same at provider pace: every request answered after --latency seconds (default 0.1 s,
about an API GET's round trip), on --paced-jobs jobs (wall time there grows with calls, so it is
scaled down; the per-job figure extrapolates).

Run: python bench/bench_import.py [--jobs 1000] [--events 200] [--latency 0.1] [--paced-jobs 50]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

KEY = "sk-bench-import"


def chat(n: int, tag: str) -> list[dict]:
    return [{"messages": [{"role": "user", "content": f"{tag} question {i}"},
                          {"role": "assistant", "content": f"{tag} answer {i}"}]} for i in range(n)]


def history(jobs: int, events: int) -> dict:
    return {"files": [{"name": "train", "filename": "train.jsonl", "lines": chat(50, "t")},
                      {"name": "valid", "filename": "valid.jsonl", "lines": chat(10, "v")}],
            "jobs": [{"training_file": "train", "validation_file": "valid", "events": events, "repeat": jobs}]}


def paced(server, latency: float) -> None:
    """Every route of server answers after latency seconds, as a provider far away does."""
    def slow(fn):
        def answer(srv, req):
            time.sleep(latency)
            return fn(srv, req)
        return answer

    server.routes = [(m, p, slow(fn), lock) for m, p, fn, lock in server.routes]


# --- the two readers, each run in a child process ----------------------------------------------


def run_ftm() -> int:
    from ftmanager import adopting

    return len(adopting.import_history("openai").adopted)


def run_plain() -> int:
    import openai

    client = openai.OpenAI(api_key=KEY, base_url=os.environ["OPENAI_BASE_URL"])
    kept = []
    for job in client.fine_tuning.jobs.list(limit=100):
        events = list(client.fine_tuning.jobs.list_events(job.id, limit=100))
        checkpoints = list(client.fine_tuning.jobs.checkpoints.list(job.id, limit=100))
        files = [(client.files.retrieve(f), client.files.content(f).read())
                 for f in (job.training_file, job.validation_file) if f]
        kept.append((job, events, checkpoints, files))
    return len(kept)


def child(reader: str) -> None:
    started = time.perf_counter()
    n = {"ftm": run_ftm, "plain": run_plain}[reader]()
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"jobs": n, "seconds": seconds, "peak_mb": peak}))


# --- the parent: a seeded stand-in, then each reader against it ---------------------------------


def measure(jobs: int, events: int, reader: str, latency: float = 0.0) -> dict:
    """One reader against a fresh stand-in seeded with jobs x events: calls per job, seconds, peak memory."""
    from ftmanager.standin import standin
    from ftmanager.standin.history import seed

    with standin(speed=1) as server, tempfile.TemporaryDirectory() as home:
        seed(server, history(jobs, events))
        if latency:
            paced(server, latency)
        server.requests.clear()
        env = {**os.environ, "OPENAI_BASE_URL": server.url, "OPENAI_API_KEY": KEY, "FTM_HOME": home}
        for name in ("OPENAI_ORG_ID", "OPENAI_PROJECT_ID"):
            env.pop(name, None)
        out = subprocess.run([sys.executable, __file__, "--child", reader], env=env, capture_output=True,
                             text=True, check=True)
        result = json.loads(out.stdout.strip().splitlines()[-1])
        assert result["jobs"] == jobs, result
        result["calls_per_job"] = sum(server.requests.values()) / jobs
        return result


def row(label: str, r: dict) -> str:
    return (f"{label:<34} {r['calls_per_job']:>9.2f} {r['seconds']:>10.1f} {r['seconds'] / r['jobs'] * 1000:>11.1f}"
            f" {r['peak_mb']:>9.0f}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--events", type=int, default=200)
    parser.add_argument("--latency", type=float, default=0.1)
    parser.add_argument("--paced-jobs", type=int, default=50)
    parser.add_argument("--child", choices=("ftm", "plain"))
    args = parser.parse_args()
    if args.child:
        return child(args.child)
    print(f"{'reader (jobs x events)':<34} {'calls/job':>9} {'seconds':>10} {'ms per job':>11} {'peak MB':>9}")
    for jobs in (args.jobs // 4, args.jobs):
        for reader in ("ftm", "plain"):
            print(row(f"{reader} ({jobs} x {args.events})", measure(jobs, args.events, reader)), flush=True)
    if args.latency:
        for reader in ("ftm", "plain"):
            r = measure(args.paced_jobs, args.events, reader, args.latency)
            print(row(f"{reader} paced {args.latency:g}s ({args.paced_jobs} x {args.events})", r), flush=True)
            print(f"{'':<34} at that pace {args.jobs} jobs take about "
                  f"{r['seconds'] / args.paced_jobs * args.jobs / 60:.0f} min", flush=True)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    main()
