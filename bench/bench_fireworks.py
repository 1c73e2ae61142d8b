"""Fireworks backend beside a naive fixed-interval poller, against the Fireworks stand-in.

The same measurement as bench_openai.py's first part (its machinery, given a Provider): a job
run through `ftmanager.submit(..., wait=True)` with ftm's backoff, then with a naive fixed 1 s
poll; reported per finished job: API calls (dataset create, upload and READY checks, job
create, polls) and the seconds between the stand-in's exact terminal moment and the ledger
recording it, at provider pace. The stand-in's profile adds a dataset that takes 10 s to
become READY after its upload.

2. `ftm pull` of a Fireworks run whose adapter is a GB of weights, from the stand-in's signed
   URLs, beside the plain way (each signed URL fetched whole with httpx, then written). Each
   runs in a fresh process; reported: MB/s, resident memory before and at its peak (psutil).

Run: python bench/bench_fireworks.py [--speed 10] [--jobs 2] [--gb 1.0] [--skip-polling] [--skip-pull]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_openai import ROOT, PeakRSS, Provider, bench_polling  # noqa: E402

FIREWORKS = Provider(
    backend="fireworks", model="accounts/fireworks/models/llama-v3p1-8b-instruct",
    env={"FIREWORKS_API_KEY": "fw-bench", "FIREWORKS_ACCOUNT_ID": "bench"}, url_env="FIREWORKS_BASE_URL",
    job_path="/accounts/bench/supervisedFineTuningJobs/{id}", profile={"dataset": 10.0},
)


# --- 2. pull ---------------------------------------------------------------------------------


def pull_child(mode: str, run_id: str, out: str) -> None:
    """One pull in this fresh process, measured (modules loaded first: the memory counted is the
    transfer's); prints a JSON line."""
    import fireworks  # noqa: F401
    import httpx  # noqa: F401

    from ftm_backends.fireworks import datasets, weights  # noqa: F401
    from ftmanager import jobs, pulls  # noqa: F401

    with PeakRSS() as rss:
        began = time.perf_counter()
        if mode == "ftm":
            from ftmanager import jobs

            where = Path(jobs.pull(run_id)["result_path"])
        else:
            where = _plain_pull(run_id, Path(out))
        seconds = time.perf_counter() - began
    stored = sum(f.stat().st_size for f in where.rglob("*") if f.is_file())
    print(json.dumps({"seconds": seconds, "before_mb": rss.before, "peak_mb": rss.peak, "stored": stored}))


def _plain_pull(run_id: str, out: Path) -> Path:
    """What a user writes with the SDK: ask for the signed URLs, fetch each, write it."""
    import fireworks
    import httpx

    from ftmanager import jobs

    model = jobs.show(run_id)["result_model"].rsplit("/", 1)[-1]
    urls = fireworks.Fireworks().models.get_download_endpoint(model).filename_to_signed_urls
    out.mkdir(parents=True)
    for name, url in urls.items():
        (out / name).write_bytes(httpx.get(url, timeout=600).content)
    return out


def bench_pull(gb: float) -> None:
    with tempfile.TemporaryDirectory(dir=os.environ.get("TMPDIR")) as tmp:
        adapter = Path(tmp) / "adapter"
        adapter.mkdir()
        (adapter / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 64}))
        with open(adapter / "adapter_model.safetensors", "wb") as fh:
            for _ in range(int(gb * 16)):
                fh.write(os.urandom(64 << 20))
        size = sum(f.stat().st_size for f in adapter.iterdir())
        proc = subprocess.Popen([sys.executable, "-m", "ftmanager", "standin", "--provider", "fireworks", "--port", "0",
                                 "--speed", "200", "--adapter", str(adapter)],
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        try:
            url = re.search(r" on (http://\S+)", proc.stdout.readline()).group(1)
            os.environ.update(FTM_HOME=str(Path(tmp) / "home"), FTM_POLL_SCALE="0.01", FIREWORKS_BASE_URL=url,
                              **FIREWORKS.env)
            import ftmanager

            data = Path(tmp) / "d.jsonl"
            data.write_text("".join(json.dumps({"messages": [{"role": "user", "content": f"q{i}"},
                                                             {"role": "assistant", "content": f"a{i}"}]}) + "\n"
                                    for i in range(12)))
            runs = [ftmanager.submit(str(data), "fireworks", wait=True)["id"] for _ in range(2)]
            print(f"\n2. ftm pull of a {size / 1e6:.0f} MB Fireworks adapter from the stand-in (each in a fresh process)")
            print(f"{'method':<46} {'MB/s':>7} {'RSS before MB':>14} {'peak RSS MB':>12} {'growth MB':>10}")
            for (label, mode), run_id in zip((("ftm pull: signed URLs streamed to disk", "ftm"),
                                              ("plain: httpx.get(url).content, then write", "plain")), runs):
                out = subprocess.run([sys.executable, __file__, "--pull-child", mode, run_id, str(Path(tmp) / mode)],
                                     capture_output=True, text=True, check=True, cwd=ROOT).stdout
                r = json.loads(out.strip().splitlines()[-1])
                assert r["stored"] == size, (mode, r)
                print(f"{label:<46} {size / 1e6 / r['seconds']:>7.0f} {r['before_mb']:>14.0f} "
                      f"{r['peak_mb']:>12.0f} {r['peak_mb'] - r['before_mb']:>10.0f}")
        finally:
            proc.terminate()
            proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--speed", type=float, default=10.0)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--gb", type=float, default=1.0)
    parser.add_argument("--skip-polling", action="store_true")
    parser.add_argument("--skip-pull", action="store_true")
    parser.add_argument("--pull-child", nargs=3, metavar=("MODE", "RUN", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    if args.pull_child:
        return pull_child(*args.pull_child)
    if not args.skip_polling:
        bench_polling(args.speed, args.jobs, FIREWORKS)
    if not args.skip_pull:
        bench_pull(args.gb)


if __name__ == "__main__":
    main()
