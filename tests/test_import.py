"""`ftm import openai`: an account's history made with the plain openai SDK (never through ftm)
comes into the ledger as runs, with every event, metric and checkpoint and its data, once."""

from __future__ import annotations

import json
import threading
import time

import openai
import pytest
from conftest import ftm
from sdk_backends import MODEL, aimed, chat_rows, openai_job_ended, served

from ftmanager import adopting, jobs
from ftmanager.errors import InvalidInput
from ftmanager.ledger import ledger
from ftmanager.standin import standin

KEY = "sk-import-" + "k3y" * 8
server = served(standin, speed=60)


def write(path, data: list[dict]):
    path.write_text("".join(json.dumps(r) + "\n" for r in data))
    return path


def upload(client, path) -> str:
    with open(path, "rb") as fh:
        return client.files.create(file=fh, purpose="fine-tune").id


@pytest.fixture
def env(server, monkeypatch, ftm_home):
    server.state.jobs.clear()
    return aimed(server, monkeypatch, {"OPENAI_BASE_URL": server.url, "OPENAI_API_KEY": KEY},
                 unset=("OPENAI_ORG_ID", "OPENAI_PROJECT_ID", "FTM_POLL_SCALE"))


@pytest.fixture
def account(env, tmp_path):
    """Made by hand: a job with training and validation data that succeeds, one cancelled."""
    client = openai.OpenAI(api_key=KEY, base_url=env.url)
    local = tmp_path / "local"
    local.mkdir()
    train = upload(client, write(local / "train.jsonl", chat_rows(12)))
    valid = upload(client, write(local / "valid.jsonl", chat_rows(10, 100)))
    done = client.fine_tuning.jobs.create(
        model=MODEL, training_file=train, validation_file=valid, suffix="mine", seed=7, metadata={"team": "a"},
        method={"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 3}}})
    openai_job_ended(client, done.id)
    stopped = client.fine_tuning.jobs.create(model=MODEL, training_file=train)
    client.fine_tuning.jobs.cancel(stopped.id)
    return {"client": client, "done": done.id, "stopped": stopped.id, "train": train, "valid": valid, "local": local}


def test_every_job_becomes_a_run_with_its_history_and_data(account, env):
    summary = adopting.import_history("openai")
    assert [a["job_id"] for a in summary.adopted] == [account["stopped"], account["done"]]
    assert sorted(summary.downloaded) == sorted([account["train"], account["valid"]])  # each file once
    run = jobs.show(account["done"])  # found by the provider's job id
    job = env.state.jobs[account["done"]]
    assert (run["backend"], run["status"], run["method"], run["suffix"], run["seed"]) == ("openai", "succeeded", "supervised", "mine", 7)
    assert run["hyperparameters"]["n_epochs"] == 3 and run["metadata"] == {"team": "a"}
    assert run["result_model"] == job.fine_tuned_model and run["trained_tokens"] == job.trained_tokens
    assert run["actual_cost"] == pytest.approx(job.trained_tokens * 3.0 / 1e6)
    assert [e["provider_event_id"] for e in run["events"]] == [e["id"] for e in job.events]
    assert [c["model_id"] for c in run["checkpoints"]] == [c["fine_tuned_model_checkpoint"] for c in job.checkpoints]
    assert max(m["step"] for m in run["metrics"]) == 36
    assert run["imported_from"] == f"{env.url} org=- project=-" and run["imported_at"]
    assert run["created_at"] == time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(job.created_at))
    train = ledger().dataset(run["dataset_id"])
    assert [json.loads(line) for line in open(train["path"])] == chat_rows(12)
    assert ledger().dataset(run["validation_dataset_id"])["n_examples"] == 10
    assert jobs.show(account["stopped"])["status"] == "cancelled"


def test_a_second_import_adds_nothing(account, env):
    adopting.import_history("openai")
    before = [(r["id"], len(ledger().events(r["id"]))) for r in ledger().runs()]
    again = adopting.import_history("openai")
    assert again.adopted == [] and sorted(again.already) == sorted([account["done"], account["stopped"]])
    assert [(r["id"], len(ledger().events(r["id"]))) for r in ledger().runs()] == before


def test_two_imports_at_once_adopt_each_job_once(account, env):
    done = []
    threads = [threading.Thread(target=lambda: done.append(adopting.import_history("openai"))) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(len(s.adopted) for s in done) == 2 and len(ledger().runs()) == 2


def test_a_job_ftm_submitted_is_recognised(env, chat_file):
    run = jobs.submit(str(chat_file), "openai", MODEL)
    summary = adopting.import_history("openai")
    assert summary.adopted == [] and summary.already == [run["provider_job_id"]]
    # and a job carrying the run id in its metadata alone (its start was interrupted) too
    client = openai.OpenAI(api_key=KEY, base_url=env.url)
    env.state.jobs.clear()
    client.fine_tuning.jobs.create(model=MODEL, training_file=_first_file(client), metadata={"ftm_run_id": run["id"]})
    assert adopting.import_history("openai").adopted == [] and len(ledger().runs()) == 1


def _first_file(client) -> str:
    return client.files.list().data[-1].id


def refuse_downloads(env, *file_ids):
    for file_id in file_ids:
        env.faults.add("no_download", "GET", f"/files/{file_id}/content", times=100)


def test_data_the_provider_refuses_is_matched_later_with_data(account, env, tmp_path):
    refuse_downloads(env, account["train"], account["valid"])
    summary = adopting.import_history("openai")
    assert {m["file_id"] for m in summary.missing} == {account["train"], account["valid"]}
    run = jobs.show(account["done"])
    assert run["dataset_id"] is None
    from ftmanager.comparing import compare

    assert compare([run["id"], account["stopped"]])["runs"][0]["dataset"] == "missing"
    with pytest.raises(InvalidInput) as refused:
        jobs.rerun(run["id"], "openai")
    assert refused.value.line() == (
        f"run {run['id']}'s training data never came back from openai: file {account['train']} (train.jsonl, "
        f"{(account['local'] / 'train.jsonl').stat().st_size} bytes). Find that file and run "
        "`ftm import openai --data PATH` to attach it.")
    later = adopting.import_history("openai", data=[account["local"]])
    assert later.adopted == [] and sorted(later.completed) == sorted([run["id"], jobs.show(account["stopped"])["id"]])
    run = jobs.show(run["id"])
    assert run["missing_data"] is None and ledger().dataset(run["dataset_id"])["n_examples"] == 12
    rerun, _ = jobs.rerun(run["id"], "openai")
    assert rerun["parent_run_id"] == run["id"] and rerun["dataset_id"] == run["dataset_id"]


def test_two_local_copies_that_both_fit_are_refused_naming_both(account, env, tmp_path):
    refuse_downloads(env, account["train"], account["valid"])
    other = tmp_path / "other"
    other.mkdir()
    text = (account["local"] / "train.jsonl").read_text()
    (other / "train.jsonl").write_text(text.replace("q1", "x1"))
    with pytest.raises(InvalidInput, match=r"two local files fit .*train\.jsonl.*other/train\.jsonl"):
        adopting.import_history("openai", data=[tmp_path])
    assert ledger().runs() == []  # nothing half-written


def test_dry_run_one_job_and_since(account, env):
    dry = adopting.import_history("openai", dry_run=True)
    assert [j["job_id"] for j in dry.would_adopt] == [account["stopped"], account["done"]] and ledger().runs() == []
    one = adopting.import_history("openai", job=account["done"])
    assert [a["job_id"] for a in one.adopted] == [account["done"]]
    later = adopting.import_history("openai", since=time.time() + 3600)
    assert later.adopted == [] and later.already == []


def test_the_cli_shows_imported_runs(account, env):
    out = ftm("import", "openai")
    assert out.code == 0, out
    assert out.out.startswith(f"Adopted 2 job(s) from openai ({env.url} org=- project=-); 0 already in the ledger.")
    assert "Data: 2 file(s) downloaded, 0 matched to local copies." in out.out
    again = ftm("import", "openai", "--json")
    assert again.code == 0 and again.json()["adopted"] == [] and len(again.json()["already"]) == 2
    listed = ftm("runs")
    assert listed.out.count("imported") == 2
    shown = ftm("show", account["done"])
    assert "imported_from: " in shown.out and "method: supervised" in shown.out


def test_a_job_still_running_is_followed_on_after_import(env, tmp_path, monkeypatch):
    client = openai.OpenAI(api_key=KEY, base_url=env.url)
    train = upload(client, write(tmp_path / "train.jsonl", chat_rows(12)))
    job = client.fine_tuning.jobs.create(model=MODEL, training_file=train,
                                         method={"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 4}}})
    [adopted] = adopting.import_history("openai").adopted
    assert adopted["status"] not in ("succeeded", "failed", "cancelled")
    monkeypatch.setenv("FTM_POLL_SCALE", "0.02")
    done = jobs.watch(adopted["run_id"])  # from the cursor the import left: nothing read twice
    assert done["status"] == "succeeded" and done["result_model"] == env.state.jobs[job.id].fine_tuned_model
    assert [e["provider_event_id"] for e in ledger().events(done["id"])] == [e["id"] for e in env.state.jobs[job.id].events]
