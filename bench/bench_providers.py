"""Hosted providers beyond OpenAI, side by side with the naive alternatives, on their stand-ins.

1. Polling a Together job and a Fireworks job (providers_common.py's machinery, each with its provider's
   phases): API calls per finished job (Together: uploads, limits, price estimate and create;
   Fireworks: dataset create, upload and READY checks, job create; polls) and the seconds from
   the provider's terminal status to the ledger, ftm's backoff beside a naive fixed 1 s poll.
   Fireworks' stand-in makes a dataset READY 10 s after its upload.
2. `ftm pull` of a 1 GB adapter (incompressible weights) from each stand-in, beside what a user
   would write instead: from Together, a .tar.zst archive, beside its docs' way
   (`client.fine_tuning.content(...)` then `.write_to_file()`, then unpacking it); from
   Fireworks, its signed URLs, beside fetching each URL whole with httpx and writing it. Each
   pull runs in a fresh process, from a finished run of its own; reported: MB/s (of the archive,
   download and unpack together, for Together) and resident memory before and at its peak.

Run: python bench/bench_providers.py [--speed 10] [--jobs 2] [--gb 1.0] [--only together|fireworks]
     [--skip-polling] [--skip-pull]
"""

from __future__ import annotations

import argparse
import importlib
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import providers_common
from providers_common import Provider, bench_polling, folder_bytes, in_fresh_processes, measured, random_adapter, start_standin

TOGETHER_MODEL = "meta-llama/Meta-Llama-3.1-8B-Instruct-Reference"
# Together: batch "max" makes 20 examples one step an epoch, so a step here stands for 20 of
# OpenAI's; its SDK adds /v1 to the base URL itself.
TOGETHER = Provider("together", TOGETHER_MODEL, {"TOGETHER_API_KEY": "tg-bench"}, "TOGETHER_BASE_URL",
                    "/fine-tunes/{id}", profile={"pending": 30.0, "step": 60.0, "compressing": 15.0, "uploading": 15.0},
                    url_strip="/v1", steps=3)
FIREWORKS = Provider("fireworks", "accounts/fireworks/models/llama-v3p1-8b-instruct",
                     {"FIREWORKS_API_KEY": "fw-bench", "FIREWORKS_ACCOUNT_ID": "bench"}, "FIREWORKS_BASE_URL",
                     "/accounts/bench/supervisedFineTuningJobs/{id}", profile={"dataset": 10.0})


# --- 2. pull ---------------------------------------------------------------------------------


def _documented_together(run_id: str, out: Path) -> Path:
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


def _plain_fireworks(run_id: str, out: Path) -> Path:
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


@dataclass(frozen=True)
class Pull:
    """A provider's pull benchmark: what is served, and the other way a user would fetch it."""

    provider: Provider
    served: str  # what the stand-in serves: an archive (Together) or the adapter's files (Fireworks)
    ftm: str  # the table's label for ftm pull
    plain: str  # the table's label for the other way
    fetch: Callable[[str, Path], Path]  # the other way: (run id, folder to fill) -> that folder
    warm: tuple[str, ...] = ()  # modules the child imports first, so the memory counted is the transfer's


PULLS = {
    "together": Pull(TOGETHER, "a .tar.zst archive; download and unpack", "ftm pull (streamed, resumable download, then unpack)",
                     "documented: content().write_to_file(), then untar", _documented_together),
    "fireworks": Pull(FIREWORKS, "its signed URLs", "ftm pull: signed URLs streamed to disk",
                      "plain: httpx.get(url).content, then write", _plain_fireworks,
                      warm=("fireworks", "httpx", "ftm_backends.fireworks.datasets", "ftm_backends.fireworks.weights",
                            "ftmanager.jobs", "ftmanager.pulls")),
}


def pull_child(provider: str, mode: str, run_id: str, out: str) -> None:
    """One pull in this fresh process, measured; prints a JSON line."""
    pull = PULLS[provider]
    for module in pull.warm:
        importlib.import_module(module)

    def transfer() -> Path:
        if mode != "ftm":
            return pull.fetch(run_id, Path(out))
        from ftmanager import jobs

        return Path(jobs.pull(run_id)["result_path"])

    measured(transfer, folder_bytes)


def bench_pull(provider: str, gb: float) -> None:
    pull = PULLS[provider]
    with tempfile.TemporaryDirectory() as tmp:
        served = random_adapter(Path(tmp), gb)
        size = folder_bytes(served)
        if provider == "together":  # Together serves it packed
            from ftmanager.standin.together import pack

            served = pack(served, Path(tmp) / "adapter.tar.zst")
            (Path(tmp) / "adapter" / "adapter_model.safetensors").unlink()
            size = served.stat().st_size
        proc, url = start_standin(200, provider, "--adapter", str(served))
        try:
            os.environ.update(FTM_HOME=str(Path(tmp) / "home"), FTM_POLL_SCALE="0.01", **pull.provider.env,
                              **{pull.provider.url_env: url.removesuffix(pull.provider.url_strip)})
            runs = {mode: _finished_run(Path(tmp), pull.provider) for mode in ("ftm", "plain")}
            print(f"\n2. ftm pull of a {size / 1e6:.0f} MB adapter from the {provider.capitalize()} stand-in "
                  f"({pull.served}; each in a fresh process, from a run of its own)")
            in_fresh_processes(((pull.ftm, "ftm"), (pull.plain, "plain")),
                               lambda mode: [__file__, "--pull-child", provider, mode, runs[mode], str(Path(tmp) / mode)],
                               size, exact=provider != "together")  # an archive unpacks to another size
        finally:
            proc.terminate()
            proc.wait()


def _finished_run(folder: Path, provider: Provider) -> str:
    import ftmanager

    data = providers_common.write_dataset(folder / "train.jsonl", 20)
    run = ftmanager.submit(str(data), provider.backend, provider.model, hyperparameters={"n_epochs": 1}, wait=True)
    assert run["status"] == "succeeded", run
    return run["id"]


def main() -> None:
    parser = providers_common.arguments(**{"skip-polling": "Only the pull part.", "skip-pull": "Only the polling part."})
    parser.add_argument("--only", choices=sorted(PULLS), help="One provider (default: each).")
    parser.add_argument("--pull-child", nargs=4, metavar=("PROVIDER", "MODE", "RUN", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.pull_child:
        return pull_child(*args.pull_child)
    for provider in [args.only] if args.only else sorted(PULLS, reverse=True):
        if not args.skip_polling:
            bench_polling(args.speed, args.jobs, PULLS[provider].provider)
        if not args.skip_pull:
            bench_pull(provider, args.gb)


if __name__ == "__main__":
    main()
