"""Fireworks backend beside a naive fixed-interval poller, against the Fireworks stand-in.

The same measurement as bench_openai.py's first part (its machinery, given a Provider): a job
run through `ftmanager.submit(..., wait=True)` with ftm's backoff, then with a naive fixed 1 s
poll; reported per finished job: API calls (dataset create, upload and READY checks, job
create, polls) and the seconds between the stand-in's exact terminal moment and the ledger
recording it, at provider pace. The stand-in's profile adds a dataset that takes 10 s to
become READY after its upload.

Run: python bench/bench_fireworks.py [--speed 10] [--jobs 2]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_openai import ROOT, Provider, bench_polling  # noqa: E402

FIREWORKS = Provider(
    backend="fireworks", model="accounts/fireworks/models/llama-v3p1-8b-instruct",
    env={"FIREWORKS_API_KEY": "fw-bench", "FIREWORKS_ACCOUNT_ID": "bench"}, url_env="FIREWORKS_BASE_URL",
    job_path="/accounts/bench/supervisedFineTuningJobs/{id}", profile={"dataset": 10.0},
)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--speed", type=float, default=10.0)
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    bench_polling(args.speed, args.jobs, FIREWORKS)


if __name__ == "__main__":
    main()
