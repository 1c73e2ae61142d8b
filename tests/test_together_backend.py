"""The Together backend through the official `together` SDK, against ftm's Together stand-in
over loopback: what a run records, faults on create (one job per run, whatever happens), a
killed submit found again by `ftm sync`, refusals, cancel, and data refused before upload.
"""

from __future__ import annotations

import json
import time

import pytest
import sdk_backends as kit
import together
from conftest import ftm, synced_after_kill
from ftm_backends.together import TogetherBackend, tagged_suffix
from sdk_backends import MemoryUploads, aimed, make_spec, served
from test_openai_cli import spawn, wait_until

from ftmanager.standin.together import standin
from ftmanager.errors import FtmError, Refused

KEY = "tg-test-" + "s3cr3t" * 4
MODEL = "meta-llama/Meta-Llama-3.1-8B-Instruct-Reference"
CREATE = ("POST", "/fine-tunes")
FAST = {"pending": 0.2, "queued": 0.2, "step": 0.1, "compressing": 0.1, "uploading": 0.1, "cancel_requested": 0.1}


server = served(standin, speed=10)


@pytest.fixture
def env(server, monkeypatch):
    """The SDK's environment pointing at the stand-in; faults, counts and pace reset."""
    server.service.speed, server.service.phases = 10, dict(FAST)
    return aimed(server, monkeypatch, {"TOGETHER_BASE_URL": server.base_url, "TOGETHER_API_KEY": KEY,
                                       "FTM_POLL_SCALE": "0.02"}, unset=("TOGETHER_PROJECT_ID",))


def jobs_of(server, run_id: str) -> list[str]:
    return [j.id for j in server.state.jobs.values() if (j.asked.get("suffix") or "").endswith(run_id)]


TOGETHER = kit.Hosted(TogetherBackend, together.InternalServerError, CREATE, jobs_of)


def spec_for(tmp_path, **fields):
    return make_spec(tmp_path, base_model=MODEL, **fields)


def test_a_together_run_records_what_an_openai_run_records(env, chat_file, tmp_path, ftm_home):
    valid = tmp_path / "valid.jsonl"
    valid.write_text("".join(json.dumps({"messages": [{"role": "user", "content": f"v{i}"},
                                                      {"role": "assistant", "content": "w"}]}) + "\n" for i in range(3)))
    result = ftm("submit", chat_file, "-b", "together", "-m", MODEL, "--epochs", "2", "--batch-size", "8",
                 "--suffix", "demo", "--seed", "3", "--validation", valid, "--lora-r", "8", "--wait", "--json")
    assert result.code == 0, result
    run = result.json()
    job = env.state.jobs[run["provider_job_id"]]
    assert jobs_of(env, run["id"]) == [job.id]
    assert job.asked["suffix"] == f"demo-{run['id']}" and job.asked["random_seed"] == 3
    assert job.asked["training_type"] == {"type": "Lora", "lora_r": 8, "lora_alpha": 16, "lora_dropout": 0.0,
                                          "lora_trainable_modules": "all-linear"}  # sent explicitly
    assert job.asked["training_method"] == {"method": "sft", "train_on_inputs": "auto"}
    assert run["status"] == "succeeded" and run["result_model"] == job.output_name
    assert run["finished_at"] == time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(job.terminal_at))
    shown = ftm("show", run["id"], "--json").json()
    messages = [e["message"] for e in shown["events"]]
    assert "together: completed" in messages  # the provider's own word, beside OpenAI's status
    assert [e["message"] for e in job.events] == [m for m in messages if m in {e["message"] for e in job.events}]
    assert [m["step"] for m in shown["metrics"]] == [1, 2, 3, 4]  # 12 examples, batch 8, 2 epochs
    assert all(m["train_loss"] > 0 for m in shown["metrics"]) and shown["metrics"][1]["valid_loss"] > 0
    assert [c["model_id"] for c in shown["checkpoints"]] == [f"{job.id}:2", f"{job.id}:4"]
    resolved = shown["resolved_hyperparameters"]
    assert (resolved["n_epochs"], resolved["batch_size"], resolved["training_type"], resolved["lora_r"]) == (2, 8, "lora", 8)
    assert resolved["learning_rate"] == pytest.approx(1e-5) and resolved["learning_rate_multiplier"] == pytest.approx(1)
    assert shown["trained_tokens"] == job.token_count * 2
    assert shown["actual_cost"] == pytest.approx(job.token_count * 2 * 0.48 / 1e6)
    assert ("PUT", f"/files/{job.asked['training_file']}/put") in env.requests  # the SDK's own upload flow
    assert run["result_model"] in {m["model_id"] for m in ftm("models", "--json").json()}
    for path in [p for p in ftm_home.rglob("*") if p.is_file()]:
        assert KEY.encode() not in path.read_bytes(), path  # the key reaches no file under FTM_HOME
    assert KEY not in result.out + result.err


def test_uploads_are_made_once_per_account_and_project(env, tmp_path, monkeypatch):
    uploads, spec = MemoryUploads(), spec_for(tmp_path)
    TogetherBackend().start(spec, uploads)
    TogetherBackend().start(spec_for(tmp_path), uploads)
    assert env.requests[("POST", "/files")] == 1  # the same content at the same account: uploaded once
    monkeypatch.setenv("TOGETHER_PROJECT_ID", "proj-2")
    other = TogetherBackend()
    other.start(spec_for(tmp_path), uploads)
    assert env.requests[("POST", "/files")] == 2 and "project=proj-2" in other.account
    env.files.pop(uploads.get(spec.dataset_id, other.account))  # gone at Together: uploaded again
    other.start(spec_for(tmp_path), uploads)
    assert env.requests[("POST", "/files")] == 3


@kit.each_create_fault(kit.lost_answer_leaves_one_job, kit.server_errors_are_retried_without_duplicates,
                       kit.rate_limits_are_waited_out, kit.failing_create_is_no_refusal)
def test_one_job_per_run_whatever_happens_to_the_create(env, tmp_path, check):
    check(TOGETHER, env, spec_for(tmp_path))  # a job is found by the run id in its suffix


def test_polls_survive_dropped_connections_and_lose_nothing(env, tmp_path):
    job_id, progresses = kit.followed_through(env, TogetherBackend(), spec_for(tmp_path),
                                              ("drop", "GET", "/fine-tunes/{id}"),
                                              ("500", "GET", "/fine-tunes/{id}/metrics"))
    provider = [e for p in progresses for e in p.events if not e.id.startswith("together-status-")]
    assert [e.message for e in provider] == [e["message"] for e in env.state.jobs[job_id].events]
    assert [m["step"] for p in progresses for m in p.metrics] == list(range(1, env.state.jobs[job_id].total_steps + 1))
    assert progresses[-1].status == "succeeded"


def test_a_killed_submit_is_found_again_by_sync(env, chat_file, ftm_home):
    env.faults.add("slow", *CREATE, delay=10)  # outlasts the kill, not the server
    before = len(env.state.jobs)
    proc = spawn("submit", chat_file, "-b", "together", "-m", MODEL, "--epochs", "1")
    wait_until(lambda: len(env.state.jobs) > before)  # Together has made the job ...
    run = synced_after_kill(proc)  # ... and ftm dies before hearing of it
    assert jobs_of(env, run["id"]) == [run["provider_job_id"]]  # found, not created again
    assert ftm("watch", run["id"]).code == 0
    assert len(env.state.jobs) == before + 1 and env.requests[CREATE] == 1


def test_definite_refusals_fail_the_run_in_one_line(env, chat_file, ftm_home, monkeypatch):
    bad_dropout = ftm("submit", chat_file, "-b", "together", "-m", MODEL, "--lora-dropout", "1.5")
    assert bad_dropout.code == 1 and "LoRA dropout must be in [0, 1)" in bad_dropout.err
    unknown = ftm("submit", chat_file, "-b", "together", "-m", "acme/not-a-model")
    assert unknown.code == 1 and "Together does not fine-tune acme/not-a-model" in unknown.err
    monkeypatch.delenv("TOGETHER_API_KEY")
    nokey = ftm("submit", chat_file, "-b", "together", "-m", MODEL)
    assert nokey.err.strip().startswith("Error: no Together API key: TOGETHER_API_KEY is not set")
    runs = ftm("runs", "--json").json()
    assert [r["status"] for r in runs] == ["failed"] * 3 and len(env.state.jobs) == len(set(env.state.jobs))
    assert not any(j.asked.get("suffix", "").endswith(tuple(r["id"] for r in runs)) for j in env.state.jobs.values())
    assert all(len(r.err.strip().splitlines()) == 1 for r in (bad_dropout, unknown, nokey))


def test_openai_models_and_bad_options_are_refused_before_anything_is_recorded(env, chat_file, ftm_home):
    openai_model = ftm("submit", chat_file, "-b", "together", "-m", "gpt-4o-mini")
    assert openai_model.code == 1 and f"--model {MODEL}" in openai_model.err
    qlora = ftm("submit", chat_file, "-b", "together", "-m", MODEL, "--training-type", "qlora")
    assert qlora.code == 1 and "option training_type must be lora or full, not 'qlora'" in qlora.err
    old = ftm("submit", chat_file, "-b", "together", "-m", MODEL, "-p", "method=qlora")  # the old name: the same check
    assert old.code == 1 and "option training_type must be lora or full, not 'qlora'" in old.err
    both = ftm("submit", chat_file, "-b", "together", "-m", MODEL, "-p", "method=full", "-p", "training_type=lora")
    assert both.code == 1 and "options method=full and training_type=lora disagree" in both.err
    assert ftm("runs", "--json").json() == [] and env.requests[("POST", "/files")] == 0


def test_full_training_by_its_name_or_its_old_one(env, tmp_path):
    """training_type=full trains every weight; -p method=full, its old name, still does."""
    backend = TogetherBackend()
    for offset, options in enumerate(({"training_type": "full"}, {"method": "full"})):
        spec = spec_for(tmp_path, options=options, offset=50 * offset)
        backend.check_options(spec.options)
        assert backend.resolve(spec)["training_type"] == "full"
        assert env.state.jobs[backend.start(spec, MemoryUploads())].asked["training_type"] == {"type": "Full"}


def test_data_together_would_reject_is_refused_before_uploading(env, tmp_path, ftm_home):
    rows = [{"messages": [{"role": "user", "content": f"q{i}"}, {"role": "user", "content": "again"},
                          {"role": "assistant", "content": "a"}]} for i in range(3)]
    data = tmp_path / "twice.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = ftm("submit", data, "-b", "together", "-m", MODEL)
    assert result.code == 1 and "together needs the roles to alternate" in result.err
    assert "--provider together" in result.err
    assert env.requests[("POST", "/files")] == 0 and ftm("runs", "--json").json() == []


def test_cancel_keeps_togethers_word_until_the_job_is_cancelled(env, chat_file, ftm_home):
    env.service.phases.update(queued=60.0, cancel_requested=60.0)  # time to look at each
    run = ftm("submit", chat_file, "-b", "together", "-m", MODEL, "--json").json()
    job = env.state.jobs[run["provider_job_id"]]
    wait_until(lambda: env.service.refresh(job) or job.status == "queued")
    assert ftm("sync").code == 0  # the ledger has seen it queued (submit's own poll may have seen it pending)
    cancelled = ftm("cancel", run["id"], "--json")
    assert cancelled.code == 0, cancelled
    assert cancelled.json()["status"] == "queued"  # cancel_requested is no end yet
    job.remaining = 0  # Together gets round to it
    assert ftm("watch", run["id"]).code == 4  # cancelled
    messages = [e["message"] for e in ftm("show", run["id"], "--json").json()["events"]]
    assert "together: cancel_requested" in messages and "together: cancelled" in messages


def test_a_long_suffix_is_shortened_to_keep_the_run_id():
    suffix = tagged_suffix("x" * 64, "run-1a2b3c4d")
    assert len(suffix) == 40 and suffix.endswith("-run-1a2b3c4d")
    assert tagged_suffix(None, "run-1a2b3c4d") == "run-1a2b3c4d"


def test_refusals_raise_refused_and_missing_jobs_not_found(env):
    backend = TogetherBackend()
    with pytest.raises(FtmError) as missing:
        backend.poll("ft-00000000-0000-0000-0000-000000000000", {})
    assert "no such object" in str(missing.value)
    env.faults.add("401", "GET", "/fine-tunes/models/limits")
    with pytest.raises(Refused, match="rejected the API key read from TOGETHER_API_KEY"):
        backend._limits(MODEL)


def test_a_dpo_run_sends_training_method_dpo_with_beta_as_dpo_beta(env, tmp_path, ftm_home):
    prefs = kit.preferences(tmp_path / "prefs.jsonl")
    result = ftm("submit", prefs, "-b", "together", "-m", MODEL, "--method", "dpo", "--beta", "0.3",
                 "--epochs", "1", "--wait", "--json")
    assert result.code == 0, result
    run = result.json()
    job = env.state.jobs[run["provider_job_id"]]
    assert job.asked["training_method"] == {"method": "dpo", "dpo_beta": 0.3, "dpo_normalize_logratios_by_length": False,
                                            "dpo_reference_free": False}
    assert run["status"] == "succeeded" and run["hyperparameters"]["beta"] == 0.3
    assert ftm("show", run["id"], "--json").json()["resolved_hyperparameters"]["beta"] == 0.3


def test_the_stand_in_fails_a_dpo_job_on_chat_rows_and_refuses_a_zero_beta(env, tmp_path):
    spec = spec_for(tmp_path, hyperparameters={"method": "dpo"})  # chat rows, past ftm's own check
    backend = TogetherBackend()
    last = kit.follow(backend, backend.start(spec, MemoryUploads()))[-1]
    assert last.status == "failed" and 'key "input.messages": missing' in last.error["message"]
    import together as sdk

    client = backend.client
    file_id = client.files.upload(file=kit.preferences(tmp_path / "p.jsonl"), purpose="fine-tune", check=False).id
    with pytest.raises(sdk.BadRequestError, match="dpo_beta must be a positive number"):
        client.post("/v1/fine-tunes", body={"training_file": file_id, "model": MODEL,
                                         "training_method": {"method": "dpo", "dpo_beta": 0}}, cast_to=dict)
