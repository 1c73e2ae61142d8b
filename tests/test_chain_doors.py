"""Chains, pushed where they could break: a loop or a link on a run that never succeeded cannot be
made, an upstream deleted from the ledger, a re-run to a backend that has no DPO (refused whole,
nothing recorded), the waiting link cancelled by hand, and a process killed between the links."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys

import pytest
from conftest import ftm
from ftm_fake_backend import SCRIPTS, FakeBackend
from sdk_backends import aimed, served
from test_chains import KEY, ok, openai_chain

from ftmanager.standin import standin

server = served(standin, speed=500)


@pytest.fixture
def env(server, monkeypatch, ftm_home):
    return aimed(server, monkeypatch, {"OPENAI_BASE_URL": server.url, "OPENAI_API_KEY": KEY, "FTM_POLL_SCALE": "0.02"},
                 unset=("OPENAI_ORG_ID", "OPENAI_PROJECT_ID"))


def runs(**where) -> list[dict]:
    return [r for r in ok(ftm("runs", "--json")) if all(r[k] == v for k, v in where.items())]


LAST_STEP = len(SCRIPTS["fake-ok"]) - 1


def fake_step(run_id: str) -> int:
    """How far the fake provider's job for run_id has moved: one step per poll."""
    return next(j["step"] for j in FakeBackend().jobs() if j["run_id"] == run_id)


def sql(home, statement: str, params=()) -> None:
    with sqlite3.connect(home / "ftm.db") as conn:
        conn.execute(statement, params)


def test_a_link_on_a_run_that_never_succeeded_cannot_be_made(env, tmp_path, chat_file):
    sft, dpo = openai_chain(tmp_path)
    failing = ok(ftm("submit", chat_file, "-b", "fake", "-m", "fake-slow", "--json"))
    before = len(runs())
    for base in (failing["id"], dpo["id"][:8] + "zz"):
        refused = ftm("submit", tmp_path / "prefs.jsonl", "-b", "fake", "-m", base, "--method", "dpo")
        assert refused.code == 1 and len(refused.err.strip().splitlines()) == 1, refused
    assert f"run {failing['id']} is queued and has no model to train on top of" in ftm(
        "submit", tmp_path / "prefs.jsonl", "-b", "fake", "-m", failing["id"], "--method", "dpo").err
    assert len(runs()) == before
    # a run id stands for its model: the link names the run, on its ft: model
    on_top = ok(ftm("submit", tmp_path / "prefs.jsonl", "-b", "openai", "-m", sft["id"], "--method", "dpo", "--json"))
    assert on_top["base_run_id"] == sft["id"] and on_top["base_model"] == sft["result_model"]


def test_a_chain_that_loops_is_cancelled_by_sync_not_followed_forever(env, ftm_home, chat_file):
    a = ok(ftm("submit", chat_file, "-b", "fake", "-m", "fake-slow", "--json"))
    b = ok(ftm("submit", chat_file, "-b", "fake", "-m", "fake-slow", "--json"))
    for run, other in ((a, b), (b, a)):  # only a hand-edited ledger can say this
        sql(ftm_home, "UPDATE runs SET status = 'queued', provider_job_id = NULL, base_run_id = ? WHERE id = ?",
            [other["id"], run["id"]])
    synced = ftm("sync", "--json", timeout=60)
    assert synced.code == 0, synced
    for run in (a, b):
        shown = ok(ftm("show", run["id"], "--json"))
        assert shown["status"] == "cancelled"
        assert any("its chain loops back" in e["message"] for e in shown["events"])


def test_an_upstream_deleted_from_the_ledger_refuses_the_rerun_in_one_line(env, ftm_home, tmp_path):
    sft, dpo = openai_chain(tmp_path)
    sql(ftm_home, "DELETE FROM events WHERE run_id = ?", [sft["id"]])
    sql(ftm_home, "DELETE FROM metrics WHERE run_id = ?", [sft["id"]])
    sql(ftm_home, "DELETE FROM checkpoints WHERE run_id = ?", [sft["id"]])
    sql(ftm_home, "DELETE FROM runs WHERE id = ?", [sft["id"]])
    refused = ftm("rerun", dpo["id"], "-b", "fake")
    assert refused.code == 1 and len(refused.err.strip().splitlines()) == 1, refused
    assert f"the run it trains on top of, {sft['id']}, no longer exists" in refused.err
    assert "(deleted)" in ftm("show", dpo["id"]).out
    assert [r["id"] for r in runs()] == [dpo["id"]]


def test_a_rerun_to_a_backend_without_dpo_records_neither_link(env, tmp_path):
    sft, dpo = openai_chain(tmp_path)
    refused = ftm("rerun", dpo["id"], "-b", "fake-sft")
    assert refused.code == 1 and len(refused.err.strip().splitlines()) == 1, refused
    assert "the fake-sft backend has no dpo training" in refused.err
    # a setting the DPO link cannot take is refused before the SFT link is made, too
    for flags in (["--beta", "5"], ["--epochs", "0"], ["-p", "colour=blue"]):
        bad = ftm("rerun", dpo["id"], "-b", "fake", *flags)
        assert bad.code == 1 and len(bad.err.strip().splitlines()) == 1, bad
    assert len(runs()) == 2


def test_the_waiting_link_cancelled_by_hand_never_starts(env, tmp_path):
    sft, dpo = openai_chain(tmp_path)
    again = ok(ftm("rerun", dpo["id"], "-b", "fake", "--json"))  # the SFT link moves one step per poll
    assert again["status"] == "queued" and not again["provider_job_id"]
    cancelled = ok(ftm("cancel", again["id"], "--json"))
    assert cancelled["status"] == "cancelled"
    link = again["base_run_id"]
    assert ftm("watch", link).code == 0
    ok(ftm("sync", "--json"))
    shown = ok(ftm("show", again["id"], "--json"))
    assert shown["status"] == "cancelled" and not shown["provider_job_id"]
    assert any(f"cancelled while waiting for {link}" in e["message"] for e in shown["events"])


def test_a_succeeded_rerun_of_the_sft_run_is_reused_and_said_so(env, tmp_path):
    sft, dpo = openai_chain(tmp_path)
    first = ok(ftm("rerun", dpo["id"], "-b", "fake", "--wait", "--json"))
    twice = ftm("rerun", dpo["id"], "-b", "fake", "--wait", "--json")
    assert twice.code == 0, twice
    assert f"{first['base_run_id']}  re-run of {sft['id']}: an existing re-run, succeeded, reused" in twice.err
    assert twice.json()["base_run_id"] == first["base_run_id"] and twice.json()["status"] == "succeeded"
    assert len(runs(backend="fake")) == 3  # one SFT link, two DPO runs on top of it


def test_the_upstream_failing_cancels_the_waiting_link(env, tmp_path):
    sft, dpo = openai_chain(tmp_path)
    again = ok(ftm("rerun", dpo["id"], "-b", "fake", "-m", "fake-fail", "--json"))
    assert ftm("watch", again["id"]).code == 4  # watching the DPO link follows the chain
    link = ok(ftm("show", again["base_run_id"], "--json"))
    shown = ok(ftm("show", again["id"], "--json"))
    assert link["status"] == "failed" and shown["status"] == "cancelled"
    assert shown["error_message"] == f"cancelled before it started: the run it trains on top of, {link['id']}, failed"


def test_a_process_killed_between_the_links_leaves_the_chain_to_sync(env, tmp_path):
    sft, dpo = openai_chain(tmp_path)
    proc = subprocess.Popen([sys.executable, "-m", "ftmanager", "rerun", dpo["id"], "-b", "fake", "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = proc.communicate(timeout=60)
    waiting = json.loads(out)  # both links recorded; the process is gone, nothing else follows the chain
    assert waiting["status"] == "queued" and not waiting["provider_job_id"], err
    link = waiting["base_run_id"]
    starts, polls = [], [fake_step(link)]
    for _ in range(10):  # the fake provider moves a job one step per poll
        now = {i["run"]["id"]: i["run"]["status"] for i in ok(ftm("sync", "--json"))}
        starts.append((now.get(link, "succeeded"), now.get(waiting["id"], "succeeded")))
        polls.append(fake_step(link))
        if starts[-1][1] not in ("queued", "created"):
            break
    assert starts[-1][0] == "succeeded" and starts[-1][1] not in ("queued", "created", "cancelled"), starts
    # one poll of the link a sync: by sync, not again by the waiting run's check of its upstream
    assert [b - a for a, b in zip(polls, polls[1:]) if a < LAST_STEP] == [1] * (LAST_STEP - polls[0]), polls
    assert all(mine == "queued" for theirs, mine in starts[:-1]), starts  # it waited while the link ran
    assert ftm("watch", waiting["id"]).code == 0
    shown = ok(ftm("show", waiting["id"], "--json"))
    assert shown["base_model"] == ok(ftm("show", link, "--json"))["result_model"]
