"""The openai SDK, unchanged, runs a whole fine-tuning workflow against `ftm serve` over loopback.

Real local training (the tiny Llama, mapped from gpt-4o-mini-2024-07-18 by the test's own
served_models.toml), real adapters answering chat, and every job an ftm run in the ledger.
"""

from __future__ import annotations

import json
import re
import time
from concurrent.futures import ThreadPoolExecutor

import openai
import pytest

from conftest import ftm
from fixtures_local import tiny_llama  # noqa: F401  (fixture)
from ftmanager.serve import serve

pytest.importorskip("peft")

KEY = "sk-serve-workflow"
BASE = "gpt-4o-mini-2024-07-18"
def method(n_epochs: int) -> dict:
    return {"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": n_epochs, "batch_size": 4}}}


def dataset(tmp_path, answer: str):
    path = tmp_path / f"{answer}.jsonl"
    path.write_text("".join(json.dumps({"messages": [{"role": "user", "content": f"q{i}"},
                                                      {"role": "assistant", "content": answer}]}) + "\n"
                            for i in range(8)))
    return path


def wait(c: openai.OpenAI, job_id: str, timeout: float = 300):
    deadline = time.time() + timeout
    while time.time() < deadline:
        job = c.fine_tuning.jobs.retrieve(job_id)
        if job.status in ("succeeded", "failed", "cancelled"):
            return job
        time.sleep(0.5)
    raise AssertionError(f"{job_id} still {job.status} after {timeout} s")


def ask(c: openai.OpenAI, model: str, prompt: str) -> str:
    answer = c.chat.completions.create(model=model, max_tokens=4, messages=[{"role": "user", "content": prompt}])
    return answer.choices[0].message.content.strip()


@pytest.fixture
def tiny_table(ftm_home, tiny_llama):  # noqa: F811
    ftm_home.mkdir(parents=True, exist_ok=True)
    (ftm_home / "served_models.toml").write_text(
        f'[models."{BASE}"]\nlocal = "{tiny_llama}"\n'
        'options = {quantize = false, device = "cpu", learning_rate = 0.05, lora_dropout = 0.0}\n')
    return ftm_home


def generated(run_id: str, prompt: str) -> str:
    """The run's answer through `ftm generate`: the same weights, loaded apart from the server."""
    result = ftm("generate", run_id, prompt, "--max-new-tokens", "4")
    assert result.code == 0, result
    return result.out.strip()


def check_sampling_parameters(c: openai.OpenAI, model: str) -> None:
    """logprobs, stop, n and the context limit on a real model, each against its plain answer."""
    q1 = [{"role": "user", "content": "q1"}]
    plain = c.chat.completions.create(model=model, max_tokens=4, messages=q1).choices[0].message.content
    scored = c.chat.completions.create(model=model, max_tokens=4, messages=q1, logprobs=True, top_logprobs=2)
    tokens = scored.choices[0].logprobs.content
    assert scored.choices[0].message.content == plain and "".join(t.token for t in tokens) == plain
    assert all(t.logprob <= 0 and len(t.top_logprobs) == 2 for t in tokens)
    if plain:
        stopped = c.chat.completions.create(model=model, max_tokens=4, messages=q1, stop=[plain[-1]])
        assert stopped.choices[0].message.content == plain[:plain.index(plain[-1])]
        assert stopped.choices[0].finish_reason == "stop"
    two = c.chat.completions.create(model=model, max_tokens=4, messages=q1, n=2)
    assert [choice.message.content for choice in two.choices] == [plain, plain]  # greedy: the same twice
    with pytest.raises(openai.BadRequestError) as err:  # the tiny model's context is 1,024 tokens
        c.chat.completions.create(model=model, max_tokens=4, messages=[{"role": "user", "content": "q" * 3000}])
    assert err.value.code == "context_length_exceeded"


def test_sdk_workflow_trains_locally_and_serves_two_adapters_on_one_base(tiny_table, tmp_path):
    # What is asserted holds on any CPU: each served name answers exactly as its own run's
    # weights do through `ftm generate` (greedy, so deterministic), whatever the model learned.
    with serve(port=0, api_key=KEY, device="cpu") as server:
        c = openai.OpenAI(base_url=server.url, api_key=KEY, max_retries=0)
        upload = c.files.create(file=dataset(tmp_path, "zz").open("rb"), purpose="fine-tune")
        created = c.fine_tuning.jobs.create(model="gpt-4o-mini", training_file=upload.id, method=method(10),
                                            suffix="zz", seed=7)
        assert created.status == "validating_files" and created.model == BASE  # named after the snapshot
        job_a = wait(c, created.id)
        assert job_a.status == "succeeded", job_a.error
        ft_a = job_a.fine_tuned_model
        assert re.fullmatch(rf"ft:{BASE}:ftm:zz:[0-9a-f]{{8}}", ft_a)
        assert job_a.hyperparameters.n_epochs == 10 and job_a.trained_tokens > 0
        assert job_a.organization_id == "org-ftm" and c.models.retrieve(ft_a).owned_by == "org-ftm"

        events = c.fine_tuning.jobs.list_events(job_a.id, limit=100).data
        metrics = [e for e in events if e.type == "metrics"]
        assert metrics and metrics[0].data["train_loss"] < metrics[-1].data["train_loss"]  # newest first
        assert "train_mean_token_accuracy" in metrics[0].data
        assert f"New fine-tuned model created: {ft_a}" in [e.message for e in events]
        answer_a = ask(c, ft_a, "q3")

        # A second job trains while the server goes on answering.
        upload_b = c.files.create(file=dataset(tmp_path, "yy").open("rb"), purpose="fine-tune")
        job_b = c.fine_tuning.jobs.create(model=BASE, training_file=upload_b.id, method=method(4),
                                          suffix="yy", seed=7)
        assert ft_a in {m.id for m in c.models.list()}
        assert ask(c, ft_a, "q3") == answer_a
        assert c.fine_tuning.jobs.retrieve(job_b.id).status not in ("succeeded", "failed", "cancelled")

        job_b = wait(c, job_b.id)
        assert job_b.status == "succeeded", job_b.error
        ft_b = job_b.fine_tuned_model
        answers = {m: ask(c, m, "q1") for m in (ft_a, ft_b, BASE)}
        stream = c.chat.completions.create(model=ft_b, max_tokens=4, stream=True,
                                           messages=[{"role": "user", "content": "q1"}])
        pieces = [ch.choices[0].delta.content for ch in stream if ch.choices and ch.choices[0].delta.content]
        assert "".join(pieces).strip() == answers[ft_b]
        check_sampling_parameters(c, ft_b)
        assert {ft_a, ft_b} <= {m.id for m in c.models.list()}
        loaded = server.service.pool.loaded()
        assert len(loaded) == 1 and len(next(iter(loaded.values()))) == 2  # one base, two adapters

    runs = {r["id"]: r for r in ftm("runs", "--json").json()}
    aliases = {m["model_id"]: m["run_id"] for m in ftm("models", "--json").json() if m["kind"] == "alias"}
    for ft in (ft_a, ft_b):
        run = runs[aliases[ft]]  # the served name is the ledger's, not an event to scan for
        assert run["backend"] == "local" and run["status"] == "succeeded" and run["id"].endswith(ft[-8:])
        assert answers[ft] == generated(run["id"], "q1")

    # A restart keeps serving both; requests that arrive together share one batch, each row
    # with its own adapter (or none), and each answers as it did alone.
    with serve(port=0, api_key=KEY, device="cpu") as again:
        c = openai.OpenAI(base_url=again.url, api_key=KEY, max_retries=0)
        assert c.fine_tuning.jobs.retrieve(job_b.id).fine_tuned_model == ft_b
        assert {ft_a, ft_b} <= {m.id for m in c.models.list()}
        models = [ft_a, ft_b, BASE, ft_b]
        with ThreadPoolExecutor(len(models)) as pool:
            together = list(pool.map(lambda m: ask(c, m, "q1"), models))
        assert together == [answers[m] for m in models]
