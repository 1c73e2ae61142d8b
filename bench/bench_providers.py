"""Hosted providers beyond OpenAI, side by side with the naive alternatives, on their stand-ins.

1. Polling a Together job (bench_openai's machinery, with Together's phases): API calls per
   finished job (uploads, limits, price estimate and create included) and the seconds from the
   provider's terminal status to the ledger, ftm's backoff beside a naive fixed 1 s poll.
2. `ftm pull` of a 1 GB adapter archive (.tar.zst, incompressible weights) from the Together
   stand-in, beside what Together's own docs show a user: `client.fine_tuning.content(...)`
   then `.write_to_file()`, then unpacking it. Each runs in a fresh process; reported: MB/s of
   archive (download and unpack together) and resident memory before and at its peak.

Run: python bench/bench_providers.py [--speed 10] [--jobs 2] [--gb 1.0] [--skip-polling] [--skip-pull]
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

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_openai import PeakRSS, Provider, bench_polling

MODEL = "meta-llama/Meta-Llama-3.1-8B-Instruct-Reference"


def together() -> Provider:
    """Together for bench_openai's polling: batch "max" makes 20 examples one step an epoch, so a
    step here stands for 20 of OpenAI's; its SDK adds /v1 to the base URL itself."""
    return Provider("together", MODEL, {"TOGETHER_API_KEY": "tg-bench"}, "TOGETHER_BASE_URL", "/fine-tunes/{id}",
                    profile={"pending": 30.0, "step": 60.0, "compressing": 15.0, "uploading": 15.0},
                    url_strip="/v1", steps=3)


# --- 2. pull ---------------------------------------------------------------------------------


def make_archive(folder: Path, gb: float) -> Path:
    """An adapter folder of gb GB of random weights, packed as the stand-in serves it."""
    from ftmanager.standin.together import pack

    adapter = folder / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 64}))
    with open(adapter / "adapter_model.safetensors", "wb") as fh:
        fh.writelines(os.urandom(64 << 20) for _ in range(int(gb * 16)))
    archive = pack(adapter, folder / "adapter.tar.zst")
    (adapter / "adapter_model.safetensors").unlink()
    return archive


def start_together(archive: Path) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, "-m", "ftmanager", "standin", "--provider", "together", "--port", "0",
                             "--speed", "200", "--adapter", str(archive)],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    base = re.search(r" on (http://\S+)/v1", proc.stdout.readline()).group(1)
    return proc, base


def pull_child(mode: str, run_id: str, out: str) -> None:
    """One pull in this fresh process, measured; prints a JSON line."""
    with PeakRSS() as rss:
        began = time.perf_counter()
        if mode == "ftm":
            from ftmanager import jobs

            where = Path(jobs.pull(run_id)["result_path"])
        else:
            where = _documented_pull(run_id, Path(out))
        seconds = time.perf_counter() - began
    stored = sum(f.stat().st_size for f in where.rglob("*") if f.is_file())
    print(json.dumps({"seconds": seconds, "before_mb": rss.before, "peak_mb": rss.peak, "stored": stored}))


def _documented_pull(run_id: str, out: Path) -> Path:
    """Together's docs: fine_tuning.content() (the whole body read), write_to_file, then untar."""
    import tarfile

    import together
    import zstandard

    from ftmanager.ledger import ledger

    job_id = ledger().run(run_id)["provider_job_id"]
    archive = out / "adapter.tar.zst"
    out.mkdir(parents=True)
    together.Together().fine_tuning.content(ft_id=job_id, checkpoint="adapter").write_to_file(archive)
    with open(archive, "rb") as raw, zstandard.ZstdDecompressor().stream_reader(raw) as stream, \
            tarfile.open(fileobj=stream, mode="r|") as tar:
        tar.extractall(out, filter="data")
    archive.unlink()
    return out


def bench_pull(gb: float) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        archive = make_archive(Path(tmp), gb)
        size = archive.stat().st_size
        proc, base = start_together(archive)
        try:
            os.environ.update(FTM_HOME=str(Path(tmp) / "home"), TOGETHER_BASE_URL=base, TOGETHER_API_KEY="tg-bench",
                              FTM_POLL_SCALE="0.01")
            run = _finished_run(Path(tmp))
            print(f"\n2. Pulling a {size / 1e6:.0f} MB adapter archive (.tar.zst) from the Together stand-in "
                  "(each in a fresh process; download and unpack)")
            print(f"{'method':<52} {'MB/s':>7} {'RSS before MB':>14} {'peak RSS MB':>12} {'growth MB':>10}")
            for label, mode in (("ftm pull (SDK's streamed download, then unpack)", "ftm"),
                                ("documented: content().write_to_file(), then untar", "documented")):
                result = subprocess.run([sys.executable, __file__, "--pull-child", mode, run["id"],
                                         str(Path(tmp) / mode)], capture_output=True, text=True, check=True, cwd=ROOT)
                r = json.loads(result.stdout.strip().splitlines()[-1])
                print(f"{label:<52} {size / 1e6 / r['seconds']:>7.0f} {r['before_mb']:>14.0f} "
                      f"{r['peak_mb']:>12.0f} {r['peak_mb'] - r['before_mb']:>10.0f}")
        finally:
            proc.terminate()
            proc.wait()


def _finished_run(folder: Path) -> dict:
    import ftmanager

    data = folder / "train.jsonl"
    data.write_text("".join(json.dumps({"messages": [{"role": "user", "content": f"q{i}"},
                                                     {"role": "assistant", "content": f"a{i}"}]}) + "\n"
                            for i in range(20)))
    run = ftmanager.submit(str(data), "together", MODEL, hyperparameters={"n_epochs": 1}, wait=True)
    assert run["status"] == "succeeded", run
    return run


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--speed", type=float, default=10.0)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--gb", type=float, default=1.0)
    parser.add_argument("--skip-polling", action="store_true")
    parser.add_argument("--skip-pull", action="store_true")
    parser.add_argument("--pull-child", nargs=3, metavar=("MODE", "RUN", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.pull_child:
        return pull_child(*args.pull_child)
    if not args.skip_polling:
        bench_polling(args.speed, args.jobs, together())
    if not args.skip_pull:
        bench_pull(args.gb)


if __name__ == "__main__":
    main()
