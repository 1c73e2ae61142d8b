"""History seeded into the OpenAI stand-in (`ftm standin --history FILE`) as an account that never
saw ftm: more than a page of jobs and of events, failed and cancelled jobs, DPO jobs (one on an SFT
job's model: a chain), a deleted training file and one whose content is refused. `ftm import openai`
takes all of it in."""

from __future__ import annotations

import json
import re

import pytest
from conftest import ftm
from sdk_backends import aimed, chat_rows, served
from test_openai_cli import spawn

from ftmanager import adopting, jobs
from ftmanager.facts import METRIC_NAMES
from ftmanager.ledger import ledger
from ftmanager.standin import standin
from ftmanager.standin.history import seed

KEY = "sk-history-" + "k3y" * 8
server = served(standin, speed=60)


HISTORY = {
    "files": [{"name": "train", "filename": "support.jsonl", "lines": chat_rows(12)},
              {"name": "gone", "filename": "gone.jsonl", "lines": chat_rows(11, tag="g"), "deleted": True},
              {"name": "locked", "filename": "locked.jsonl", "lines": chat_rows(10, tag="l"), "refuse_download": True},
              {"name": "pairs", "filename": "pairs.jsonl", "lines": [
                  {"input": {"messages": [{"role": "user", "content": f"q{i}"}]},
                   "preferred_output": [{"role": "assistant", "content": "yes"}],
                   "non_preferred_output": [{"role": "assistant", "content": "no"}]} for i in range(10)]}],
    "jobs": [{"training_file": "train", "events": 20, "repeat": 120, "name": "sft"},
             {"training_file": "pairs", "method": "dpo", "on": "sft"},  # OpenAI's SFT, then DPO on its model
             {"training_file": "gone", "status": "failed"},
             {"training_file": "locked", "status": "cancelled", "method": "dpo",
              "hyperparameters": {"beta": 0.1, "n_epochs": 2}},
             {"training_file": "train", "method": "reinforcement"},
             {"training_file": "train", "events": 250, "suffix": "support", "metadata": {"team": "help"}}],
}


@pytest.fixture
def env(server, monkeypatch, ftm_home):
    server.state.jobs.clear()
    aimed(server, monkeypatch, {"OPENAI_BASE_URL": server.url, "OPENAI_API_KEY": KEY},
          unset=("OPENAI_ORG_ID", "OPENAI_PROJECT_ID", "FTM_POLL_SCALE"))
    made = seed(server, HISTORY)
    return server, made


def test_a_seeded_account_comes_in_whole(env):
    server, made = env
    server.requests.clear()
    summary = adopting.import_history("openai")
    assert len(summary.adopted) == 125 and server.requests[("GET", "/fine_tuning/jobs")] == 2  # two pages
    newest = jobs.show(made[-1])
    assert len(newest["events"]) == 250 and newest["metadata"] == {"team": "help"} and newest["suffix"] == "support"
    assert [c["step"] for c in newest["checkpoints"]] == [246, 247, 248]
    failed, dpo, rft = jobs.show(made[-4]), jobs.show(made[-3]), jobs.show(made[-2])
    assert (failed["status"], failed["error_code"]) == ("failed", "invalid_training_file")
    assert (dpo["status"], dpo["method"], dpo["hyperparameters"]["beta"]) == ("cancelled", "dpo", 0.1)
    sent = [e["data"] for e in server.state.jobs[dpo["provider_job_id"]].events if e["type"] == "metrics"]
    assert [m["train_reward_margin"] for m in dpo["metrics"]] == [d["train_reward_margin"] for d in sent]  # kept by name
    assert not set(newest["metrics"][0]) - {"run_id", "step", *METRIC_NAMES}  # a supervised job: nothing more
    assert summary.not_rerunnable == {"reinforcement": [rft["id"]]}  # DPO re-runs; reinforcement not yet
    gone = next(f for f in HISTORY["files"] if f["name"] == "gone")
    missing = {m["run_id"]: m for m in summary.missing}
    assert missing[failed["id"]]["filename"] is None and missing[dpo["id"]]["filename"] == "locked.jsonl"
    assert failed["dataset_id"] is None and gone["deleted"]
    assert len(ledger().datasets()) == 2  # one training file, stored once for 121 runs, and the pairs
    assert jobs.show(made[120])["base_run_id"] == jobs.show(made[119])["id"]  # DPO on the SFT's model: a chain


def test_the_cli_seeds_a_history_file(tmp_path, ftm_home, monkeypatch):
    path = tmp_path / "history.json"
    path.write_text(json.dumps({"files": HISTORY["files"][:1], "jobs": [{"training_file": "train", "repeat": 3}]}))
    proc = spawn("standin", "--port", "0", "--history", path)
    try:
        url = re.search(r" on (http://\S+) ", proc.stdout.readline()).group(1)
        monkeypatch.setenv("OPENAI_BASE_URL", url)
        monkeypatch.setenv("OPENAI_API_KEY", "sk-x")
        out = ftm("import", "openai", "--dry-run")
        assert out.code == 0 and out.out.startswith("Would adopt 3 job(s) from openai"), out
    finally:
        proc.terminate()
        proc.wait(10)
    bad = ftm("standin", "--port", "0", "--history", tmp_path / "nope.json")
    assert bad.code == 1 and bad.err.startswith("Error: cannot read the history file ")
    path.write_text(json.dumps({"files": HISTORY["files"][:1], "jobs": [{"training_file": "train", "on": "sft"}]}))
    bad = ftm("standin", "--port", "0", "--history", path)
    assert bad.code == 1 and bad.err.startswith("Error: a seeded job is on 'sft', which names no earlier"), bad
