"""The machinery the hosted-provider benchmarks share (bench_openai.py, bench_providers.py); not a
benchmark itself.

1. Polling: a job run through `ftmanager.submit(..., wait=True)` on a provider's stand-in, with
   ftm's backoff beside a naive fixed 1 s poll (the same backend, its poll_interval replaced).
   A Provider says what differs between providers. Reported: API calls per finished job and the
   seconds between the stand-in's exact terminal moment and ftm recording it, at provider pace.
2. Transfers in fresh processes: each way of moving a file runs in a process of its own (the
   child measures itself with PeakRSS and prints one JSON line); the parent prints MB/s and
   resident memory before and at the peak, one row a way.
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


def arguments(**flags: str) -> argparse.ArgumentParser:
    """The options every hosted benchmark takes, and a store_true option per flag (name -> help)."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--speed", type=float, default=10.0)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--gb", type=float, default=1.0)
    for name, help_ in flags.items():
        parser.add_argument(f"--{name}", action="store_true", help=help_)
    return parser


def start_standin(speed: float, provider: str = "openai", *extra: str) -> tuple[subprocess.Popen, str]:
    """`ftm standin` in a child process on a free port: (the process, the URL it prints)."""
    proc = subprocess.Popen([sys.executable, "-m", "ftmanager", "standin", "--provider", provider, "--port", "0",
                             "--speed", str(speed), *extra], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
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


def bench_polling(speed: float, n_jobs: int, provider: Provider) -> None:
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


# --- 2. transfers in fresh processes -----------------------------------------------------


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


def measured(transfer, stored) -> None:
    """In a child: run transfer() under PeakRSS and print one JSON line of its seconds, memory
    (MB) and stored(what transfer returned): the bytes that arrived."""
    with PeakRSS() as rss:
        began = time.perf_counter()
        result = transfer()
        seconds = time.perf_counter() - began
    print(json.dumps({"seconds": seconds, "before_mb": rss.before, "peak_mb": rss.peak, "stored": stored(result)}))


def folder_bytes(folder: Path) -> int:
    return sum(f.stat().st_size for f in Path(folder).rglob("*") if f.is_file())


def in_fresh_processes(ways, child_argv, size: int, exact: bool = True) -> None:
    """Each (label, mode) of ways in a fresh Python process (child_argv(mode): its script and
    arguments): a row of MB/s (size bytes over its seconds) and memory. exact: each must have
    stored size bytes."""
    width = max(len(label) for label, _ in ways)
    print(f"{'method':<{width}} {'MB/s':>7} {'RSS before MB':>14} {'peak RSS MB':>12} {'growth MB':>10}")
    for label, mode in ways:
        out = subprocess.run([sys.executable, *child_argv(mode)], capture_output=True, text=True,
                             check=True, cwd=ROOT).stdout
        r = json.loads(out.strip().splitlines()[-1])
        assert not exact or r["stored"] == size, (mode, r)
        print(f"{label:<{width}} {size / 1e6 / r['seconds']:>7.0f} {r['before_mb']:>14.0f} "
              f"{r['peak_mb']:>12.0f} {r['peak_mb'] - r['before_mb']:>10.0f}")


def random_adapter(folder: Path, gb: float) -> Path:
    """A LoRA adapter folder holding gb GB of random (incompressible) weights."""
    adapter = folder / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 64}))
    chunks = int(gb * 16)
    size = chunks * (64 << 20)
    # a safetensors header ftm pull's check reads, then the random bytes as one uint8 tensor
    header = json.dumps({"w": {"dtype": "U8", "shape": [size], "data_offsets": [0, size]}}).encode()
    with open(adapter / "adapter_model.safetensors", "wb") as fh:
        fh.write(len(header).to_bytes(8, "little") + header)
        fh.writelines(os.urandom(64 << 20) for _ in range(chunks))
    return adapter
