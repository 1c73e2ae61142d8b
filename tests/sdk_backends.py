"""What the tests of the backends driven through a provider's official SDK (OpenAI, Azure, Together,
Fireworks) share: a RunSpec on fresh data, the uploads table in memory, following a job as
jobs.watch does, pointing the SDK at a stand-in, and the guarantees every such backend keeps when
the create request meets a fault (one job per run, whatever happens)."""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from ftmanager.backend import RunSpec, Uploads
from ftmanager.errors import FtmError, Refused

MODEL = "gpt-4o-mini-2024-07-18"  # the base model of a spec unless a test names another


class MemoryUploads(Uploads):
    """The ledger's uploads table, kept in a dict."""

    def __init__(self):
        self.rows: dict[tuple[str, str], tuple[str, int]] = {}

    def get(self, dataset_id, account):
        row = self.rows.get((dataset_id, account))
        return row[0] if row else None

    def put(self, dataset_id, account, file_id, nbytes):
        self.rows[(dataset_id, account)] = (file_id, nbytes)

    def forget(self, dataset_id, account):
        self.rows.pop((dataset_id, account), None)


def dataset(path: Path, n: int, offset: int = 0) -> Path:
    """n chat examples (capital questions from `offset` on, JSON answers) written to path."""
    rows = [{"messages": [{"role": "user", "content": f"Capital of country {i}?"},
                          {"role": "assistant", "content": json.dumps({"capital": f"City {i}"})}]}
            for i in range(offset, offset + n)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def make_spec(tmp_path: Path, n: int = 12, validation: int = 0, offset: int = 0, **fields) -> RunSpec:
    """A run's spec on fresh data (offset makes the content, so its dataset, differ)."""
    train = dataset(tmp_path / f"train-{n}-{offset}.jsonl", n, offset)
    valid = dataset(tmp_path / f"valid-{validation}.jsonl", validation, offset=1000) if validation else None
    digest = lambda p: hashlib.sha256(p.read_bytes()).hexdigest()  # noqa: E731
    fields = {"base_model": MODEL, "hyperparameters": {"n_epochs": 2}, "suffix": "t", **fields}
    return RunSpec(run_id=f"run-{secrets.token_hex(4)}", training_file=train, dataset_id=digest(train),
                   n_examples=n, run_dir=tmp_path, validation_file=valid,
                   validation_dataset_id=digest(valid) if valid else None, **fields)


def follow(backend, job_id: str, every: float = 0.05, timeout: float = 30, cursor=None) -> list:
    """Poll until a terminal status, as jobs.watch does; returns every Progress."""
    progresses, cursor = [], cursor or {}
    deadline = time.time() + timeout
    while time.time() < deadline:
        p = backend.poll(job_id, cursor)
        progresses.append(p)
        cursor = json.loads(json.dumps(p.cursor))  # what the ledger stores and hands back
        if p.status in ("succeeded", "failed", "cancelled"):
            return progresses
        time.sleep(every)
    raise AssertionError(f"{job_id} still {progresses[-1].status}")


def chat_rows(n: int, offset: int = 0, tag: str = "q") -> list[dict]:
    """n one-turn chats (user "q<i>", assistant "a<i>"), the data an account's jobs are made of."""
    return [{"messages": [{"role": "user", "content": f"{tag}{i}"}, {"role": "assistant", "content": f"a{i}"}]}
            for i in range(offset, offset + n)]


def chat_jsonl(n: int) -> str:
    """chat_rows(n) as the text of a JSONL file."""
    return "".join(json.dumps(r) + "\n" for r in chat_rows(n))


def openai_job_ended(client, job_id: str, timeout: float = 60):
    """The OpenAI job once it succeeded, failed or was cancelled (fails the test after timeout)."""
    deadline = time.time() + timeout
    while (job := client.fine_tuning.jobs.retrieve(job_id)).status not in ("succeeded", "failed", "cancelled"):
        assert time.time() < deadline, job.status
        time.sleep(0.1)
    return job


def served(standin, **options):
    """A module's stand-in as a fixture: standin(**options), started once, closed after the module."""

    @pytest.fixture(scope="module")
    def server():
        with standin(**options) as srv:
            yield srv

    return server


def followed_through(env, backend, spec: RunSpec, *faults: tuple[str, str, str]) -> tuple[str, list]:
    """(job id, every Progress) of a job started, then followed to its end while each fault
    (kind, method, path with {id} for the job's id) meets its polls."""
    job_id = backend.start(spec, MemoryUploads())
    for kind, method, path in faults:
        env.faults.add(kind, method, path.format(id=job_id))
    return job_id, follow(backend, job_id)


def aimed(server, monkeypatch, env: dict, unset: tuple = ()):
    """The SDK's environment pointing at the stand-in (env set, unset removed); faults and counts reset."""
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    for name in unset:
        monkeypatch.delenv(name, raising=False)
    server.faults.clear()
    server.requests.clear()
    return server


# --- one job per run, whatever happens to the create ----------------------------------------


@dataclass(frozen=True)
class Hosted:
    """A backend under test: its class, the SDK's error for a provider that keeps failing, the
    request that creates a job, and how its stand-in lists the jobs made for a run."""

    backend: type
    server_error: type
    create: tuple[str, str]
    jobs_of: Callable[[object, str], list[str]]


def each_create_fault(*checks):
    """One test run once per check below, each run named after its check."""
    return pytest.mark.parametrize("check", checks, ids=lambda check: check.__name__)


def lost_answer_leaves_one_job(hosted: Hosted, env, spec: RunSpec) -> None:
    """The connection drops after the job was made: start() finds it, and posts no second create."""
    env.faults.add("drop_after", *hosted.create)
    job_id = hosted.backend().start(spec, MemoryUploads())
    assert hosted.jobs_of(env, spec.run_id) == [job_id]
    assert env.requests[hosted.create] == 1  # found, not posted again


def server_errors_are_retried_without_duplicates(hosted: Hosted, env, spec: RunSpec) -> None:
    env.faults.add("500", *hosted.create, times=2)
    job_id = hosted.backend().start(spec, MemoryUploads())
    assert hosted.jobs_of(env, spec.run_id) == [job_id] and env.requests[hosted.create] == 3


def rate_limits_are_waited_out(hosted: Hosted, env, spec: RunSpec) -> None:
    """A 429 on create is posted again after the provider's Retry-After, making one job."""
    env.faults.add("429", *hosted.create, retry_after=1.0)
    began = time.monotonic()
    job_id = hosted.backend().start(spec, MemoryUploads())
    assert time.monotonic() - began >= 1.0  # the SDK's own backoff would be 0.5 s at most
    assert env.requests[hosted.create] == 2 and hosted.jobs_of(env, spec.run_id) == [job_id]


def failing_create_is_no_refusal(hosted: Hosted, env, spec: RunSpec) -> None:
    """A create that fails past the SDK's retries raises the SDK's error and makes nothing."""
    env.faults.add("503", *hosted.create, times=2)
    backend = hosted.backend(max_retries=1)
    with pytest.raises(hosted.server_error) as caught:
        backend.start(spec, MemoryUploads())
    assert not isinstance(caught.value, FtmError)  # the run stays `created` for `ftm sync`
    assert hosted.jobs_of(env, spec.run_id) == [] and backend.find(spec.run_id) is None


def refused_without(monkeypatch, start: Callable[[], object], *names: str) -> None:
    """Each variable in turn removed, start() is refused in a line saying it is not set."""
    for name in names:
        monkeypatch.delenv(name)
        with pytest.raises(Refused, match=f"{name} is not set"):
            start()


def preferences(path: Path, n: int = 12, offset: int = 0) -> Path:
    """n preference pairs in OpenAI's shape (a question, a preferred and a worse answer) written to path."""
    rows = [{"input": {"messages": [{"role": "user", "content": f"Capital of country {i}?"}]},
             "preferred_output": [{"role": "assistant", "content": f"City {i}."}],
             "non_preferred_output": [{"role": "assistant", "content": f"I am not sure about country {i}."}]}
            for i in range(offset, offset + n)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path
