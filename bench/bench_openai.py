"""OpenAI backend, side by side with the naive alternatives, against the stand-in server.

1. Polling (shared with bench_fireworks.py: a Provider says what differs): a job run through
   `ftmanager.submit(..., wait=True)` (the ledger records every
   poll), with our backoff (2 s doubling to 30 s while validating/queued, 1.5 s while
   running) beside a naive fixed 1 s poll. Reported: API calls per finished job (uploads and
   create included) and the seconds between the provider's terminal status (the stand-in's
   exact finish time) and ftm recording it. The stand-in runs a provider-like profile
   (validating 30 s, queued 90 s, 3 s a step) `--speed` times faster; ftm's poll intervals are
   shrunk by the same factor (FTM_POLL_SCALE), and all seconds are printed at provider pace.
2. Upload: a generated 1 GB JSONL in /tmp (deleted afterwards) sent by our Uploads-API path
   (64 MB parts streamed from disk), by the SDK's upload_file_chunked, and by the baseline
   that reads the file into memory and sends it with files.create. Each runs in a fresh
   process; reported: MB/s, and resident memory before the upload and at its peak during it
   (sampled every 5 ms with psutil).

Run: python bench/bench_openai.py [--speed 10] [--jobs 2] [--gb 1.0] [--skip-upload]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

PROFILE = {"validating_files": 30.0, "queued": 90.0, "step": 3.0}
MODEL = "gpt-4o-mini-2024-07-18"
ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Provider:
    """What the polling benchmark needs to know of a provider and its stand-in."""

    backend: str  # the ftm backend, and `ftm standin --provider`
    model: str
    env: dict  # the SDK's settings besides the base URL
    url_env: str  # the variable the stand-in's URL goes in
    job_path: str  # the path a poll of job {id} asks for, below the stand-in's prefix
    profile: dict = field(default_factory=dict)  # phases beyond PROFILE (seconds at provider pace)
    url_strip: str = ""  # the end of the stand-in's URL that the SDK adds itself (Together's /v1)
    steps: int = 60  # steps of the 20-example, 3-epoch job there (its batch size decides)


OPENAI = Provider("openai", MODEL, {"OPENAI_API_KEY": "sk-bench"}, "OPENAI_BASE_URL", "/fine_tuning/jobs/{id}")


def start_standin(speed: float, provider: str = "openai") -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, "-m", "ftmanager", "standin", "--provider", provider, "--port", "0",
                             "--speed", str(speed)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    url = re.search(r" on (http://\S+)", proc.stdout.readline()).group(1)
    return proc, url


def control(url: str, path: str, body: dict | None = None, method: str = "GET") -> dict:
    import httpx

    base = "{0.scheme}://{0.netloc}/_standin".format(urlsplit(url))
    method = "POST" if body is not None else method
    return httpx.request(method, base + path, json=body, timeout=30).json()


def write_dataset(path: Path, n: int) -> Path:
    rows = [{"messages": [{"role": "user", "content": f"What is the capital of country {i}?"},
                          {"role": "assistant", "content": json.dumps({"capital": f"City {i}"})}]}
            for i in range(n)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


# --- 1. polling --------------------------------------------------------------------------


def naive_backend(provider: Provider) -> str:
    """The baseline: the same backend polled every second whatever the job is doing."""
    from ftmanager import registry

    class Naive(registry.load(provider.backend)):
        name = f"{provider.backend}-naive"

        def poll_interval(self, status, last):
            return 1.0 * float(os.environ.get("FTM_POLL_SCALE") or 1)

    registry.register(Naive)
    return Naive.name


def one_job(url: str, data: Path, backend: str, speed: float, provider: Provider) -> dict:
    import ftmanager

    control(url, "/requests", method="DELETE")
    run = ftmanager.submit(str(data), backend, provider.model, hyperparameters={"n_epochs": 3}, wait=True)
    recorded = time.time()
    finish = control(url, f"/jobs/{run['provider_job_id']}")
    calls = control(url, "/requests")
    polls = calls["by_route"].get("GET " + provider.job_path.format(id=run["provider_job_id"]), 0)
    assert run["status"] == "succeeded", run
    return {"calls": calls["total"], "polls": polls, "lag": (recorded - finish["terminal_at"]) * speed}


def bench_polling(speed: float, n_jobs: int, provider: Provider = OPENAI) -> None:
    """API calls per job and seconds from terminal status to ledger: ftm's backoff beside a fixed poll."""
    proc, url = start_standin(speed, provider.backend)
    profile = {**PROFILE, **provider.profile}
    try:
        control(url, "/config", {"phases": profile})
        with tempfile.TemporaryDirectory() as tmp:
            os.environ.update(FTM_HOME=str(Path(tmp) / "home"), FTM_POLL_SCALE=str(1 / speed),
                              **{provider.url_env: url.removesuffix(provider.url_strip)}, **provider.env)
            naive = naive_backend(provider)
            data = write_dataset(Path(tmp) / "capitals.jsonl", 20)
            job_seconds = profile["validating_files"] + profile["queued"] + provider.steps * profile["step"]
            print(f"\n1. Polling one {provider.backend} job: 20 examples x 3 epochs = {provider.steps} steps, {job_seconds:.0f} s "
                  f"at provider pace ({', '.join(f'{k} {v:g} s' for k, v in profile.items())}), stand-in at "
                  f"x{speed:g}, {n_jobs} job(s) each")
            print(f"{'strategy':<30} {'API calls/job':>14} {'polls/job':>10} {'lag median s':>13} {'lag max s':>10}")
            for label, name in (("ftm backoff (2->30 s, 1.5 s)", provider.backend), ("naive fixed 1 s poll", naive)):
                rows = [one_job(url, data, name, speed, provider) for _ in range(n_jobs)]
                print(f"{label:<30} {statistics.median(r['calls'] for r in rows):>14.0f} "
                      f"{statistics.median(r['polls'] for r in rows):>10.0f} "
                      f"{statistics.median(r['lag'] for r in rows):>13.2f} {max(r['lag'] for r in rows):>10.2f}")
    finally:
        proc.terminate()
        proc.wait()


# --- 2. upload ---------------------------------------------------------------------------


def write_big(path: Path, gb: float) -> int:
    line = '{"messages": [{"role": "user", "content": "Question %09d: what is the capital of the country?"}, ' \
           '{"role": "assistant", "content": "{\\"capital\\": \\"City %09d\\"}"}]}\n'
    target, i = int(gb * (1 << 30)), 0
    with open(path, "w") as out:
        while out.tell() < target:
            out.write("".join(line % (j, j) for j in range(i, i + 10000)))
            i += 10000
    return path.stat().st_size


def upload_child(mode: str, path: str, url: str) -> None:
    """In a fresh process: send the file one way, print seconds and RSS (MB) as JSON."""
    import openai

    from ftm_backends.openai import OpenAIBackend

    os.environ.update(OPENAI_BASE_URL=url, OPENAI_API_KEY="sk-bench", FTM_OPENAI_TIMEOUT="600")
    client = openai.OpenAI(timeout=600)
    sampler = PeakRSS()
    start = time.perf_counter()
    with sampler:
        if mode == "ftm":
            file_id = OpenAIBackend().upload(path, "bench.jsonl")
        elif mode == "sdk":
            file_id = client.uploads.upload_file_chunked(file=Path(path), mime_type="text/jsonl",
                                                         purpose="fine-tune").file.id
        else:
            data = Path(path).read_bytes()
            file_id = client.files.create(file=("bench.jsonl", data), purpose="fine-tune").id
    seconds = time.perf_counter() - start
    print(json.dumps({"seconds": seconds, "peak_mb": sampler.peak, "before_mb": sampler.before,
                      "stored": client.files.retrieve(file_id).bytes}))


class PeakRSS:
    """The process's resident memory before a block and its peak during it (sampled every 5 ms)."""

    def __enter__(self):
        import threading

        import psutil

        self._proc, self._done = psutil.Process(), threading.Event()
        self.before = self.peak = self._proc.memory_info().rss / 1e6
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self):
        while not self._done.wait(0.005):
            self.peak = max(self.peak, self._proc.memory_info().rss / 1e6)

    def __exit__(self, *exc):
        self._done.set()
        self._thread.join()
        self.peak = max(self.peak, self._proc.memory_info().rss / 1e6)


def bench_upload(gb: float) -> None:
    path = Path(tempfile.gettempdir()) / "ftm-bench-upload.jsonl"
    proc, url = start_standin(1)
    try:
        control(url, "/config", {"max_file_bytes": 1 << 40})  # let the baseline's single POST through
        size = write_big(path, gb)
        print(f"\n2. Uploading a {size / 1e6:.0f} MB JSONL to the stand-in (each in a fresh process)")
        print(f"{'method':<46} {'MB/s':>7} {'RSS before MB':>14} {'peak RSS MB':>12} {'growth MB':>10}")
        for label, mode in (("ftm: Uploads API, 64 MB parts from disk", "ftm"),
                            ("SDK uploads.upload_file_chunked(Path)", "sdk"),
                            ("baseline: read into memory, files.create", "baseline")):
            out = subprocess.run([sys.executable, __file__, "--upload-child", mode, str(path), url],
                                 capture_output=True, text=True, check=True, cwd=ROOT).stdout
            r = json.loads(out.strip().splitlines()[-1])
            assert r["stored"] == size, (mode, r)
            print(f"{label:<46} {size / 1e6 / r['seconds']:>7.0f} {r['before_mb']:>14.0f} "
                  f"{r['peak_mb']:>12.0f} {r['peak_mb'] - r['before_mb']:>10.0f}")
    finally:
        path.unlink(missing_ok=True)
        proc.terminate()
        proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--speed", type=float, default=10.0)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--gb", type=float, default=1.0)
    parser.add_argument("--skip-upload", action="store_true")
    parser.add_argument("--upload-child", nargs=3, metavar=("MODE", "PATH", "URL"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.upload_child:
        return upload_child(*args.upload_child)
    sys.path.insert(0, str(ROOT))
    bench_polling(args.speed, args.jobs)
    if not args.skip_upload:
        bench_upload(args.gb)


if __name__ == "__main__":
    main()
