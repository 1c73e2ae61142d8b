"""OpenAI backend, side by side with the naive alternatives, against the stand-in server.

1. Polling (providers_common.py's machinery, shared with bench_providers.py): a job run through
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
import os
import sys
import tempfile
from pathlib import Path

import providers_common
from providers_common import Provider, bench_polling, control, in_fresh_processes, measured, start_standin

MODEL = "gpt-4o-mini-2024-07-18"
OPENAI = Provider("openai", MODEL, {"OPENAI_API_KEY": "sk-bench"}, "OPENAI_BASE_URL", "/fine_tuning/jobs/{id}")


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
    """In a fresh process: send the file one way, measured."""
    import openai

    from ftm_backends.openai import OpenAIBackend

    os.environ.update(OPENAI_BASE_URL=url, OPENAI_API_KEY="sk-bench", FTM_OPENAI_TIMEOUT="600")
    client = openai.OpenAI(timeout=600)

    def send() -> str:
        if mode == "ftm":
            return OpenAIBackend().upload(path, "bench.jsonl")
        if mode == "sdk":
            return client.uploads.upload_file_chunked(file=Path(path), mime_type="text/jsonl", purpose="fine-tune").file.id
        data = Path(path).read_bytes()
        return client.files.create(file=("bench.jsonl", data), purpose="fine-tune").id

    measured(send, lambda file_id: client.files.retrieve(file_id).bytes)


def bench_upload(gb: float) -> None:
    path = Path(tempfile.gettempdir()) / "ftm-bench-upload.jsonl"
    proc, url = start_standin(1)
    try:
        control(url, "/config", {"max_file_bytes": 1 << 40})  # let the baseline's single POST through
        size = write_big(path, gb)
        print(f"\n2. Uploading a {size / 1e6:.0f} MB JSONL to the stand-in (each in a fresh process)")
        in_fresh_processes((("ftm: Uploads API, 64 MB parts from disk", "ftm"),
                            ("SDK uploads.upload_file_chunked(Path)", "sdk"),
                            ("baseline: read into memory, files.create", "baseline")),
                           lambda mode: [__file__, "--upload-child", mode, str(path), url], size)
    finally:
        path.unlink(missing_ok=True)
        proc.terminate()
        proc.wait()


def main() -> None:
    parser = providers_common.arguments(**{"skip-upload": "Only the polling part."})
    parser.add_argument("--upload-child", nargs=3, metavar=("MODE", "PATH", "URL"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.upload_child:
        return upload_child(*args.upload_child)
    sys.path.insert(0, str(providers_common.ROOT))
    bench_polling(args.speed, args.jobs, OPENAI)
    if not args.skip_upload:
        bench_upload(args.gb)


if __name__ == "__main__":
    main()
