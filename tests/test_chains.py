"""Chains: a DPO run on top of an SFT run's model records that run (base_run_id), trains locally
from the SFT run's weights with no export, and re-runs elsewhere link by link: the SFT link first,
the DPO link waiting "queued" until it succeeds, and cancelled when it fails (reusing a succeeded
re-run of the SFT run: tests/test_chain_doors.py)."""

from __future__ import annotations

import json

import pytest
from conftest import ftm
from fixtures_local import tiny_llama  # noqa: F401  (fixture)
from sdk_backends import aimed, preferences, served

from ftmanager.standin import standin

pytest.importorskip("peft")

KEY = "sk-test-" + "ch4" * 8
server = served(standin, speed=500)
LOCAL = ("-p", "device=cpu", "--no-quantize", "--batch-size", "4")


@pytest.fixture
def env(server, monkeypatch, ftm_home):
    return aimed(server, monkeypatch, {"OPENAI_BASE_URL": server.url, "OPENAI_API_KEY": KEY, "FTM_POLL_SCALE": "0.02"},
                 unset=("OPENAI_ORG_ID", "OPENAI_PROJECT_ID"))


def ok(res):
    assert res.code == 0, res
    return res.json()


def first_figures(run_id: str) -> dict:
    """The DPO figures of a local run's first step, as its worker reported them."""
    from ftmanager import paths
    from ftm_backends.local.trainer import rundir

    records, _ = rundir.read_from(paths.runs_dir() / run_id, 0)
    return next(rec["data"] for _, rec in records if rec.get("kind") == "metrics")


def test_local_dpo_on_a_local_sft_run_starts_from_its_weights(ftm_home, tmp_path, chat_file, tiny_llama):  # noqa: F811
    sft = ok(ftm("submit", chat_file, "-b", "local", "-m", tiny_llama, "--epochs", "1", "--learning-rate-multiplier",
                 "20", *LOCAL, "--wait", "--json", timeout=300))
    prefs = preferences(tmp_path / "prefs.jsonl", n=8)
    on_top = ok(ftm("submit", prefs, "-b", "local", "-m", sft["id"], "--method", "dpo", "--epochs", "1", *LOCAL,
                    "--wait", "--json", timeout=300))
    plain = ok(ftm("submit", prefs, "-b", "local", "-m", tiny_llama, "--method", "dpo", "--epochs", "1", *LOCAL,
                   "--wait", "--json", timeout=300))
    assert on_top["status"] == plain["status"] == "succeeded"
    assert on_top["base_run_id"] == sft["id"] and on_top["base_model"] == sft["result_model"]
    assert plain["base_run_id"] is None
    # the policy starts as the SFT model: its log-probabilities of the same pairs differ from the base's
    assert first_figures(on_top["id"])["logps/chosen"] != pytest.approx(first_figures(plain["id"])["logps/chosen"])
    shown = ftm("show", on_top["id"])
    assert f"on top of: {sft['id']} (SFT)" in shown.out
    said = ftm("generate", on_top["id"], "Capital of country 1?", "--max-new-tokens", "4")
    assert said.code == 0, said
    by_model = ok(ftm("runs", "--json"))
    assert {r["id"]: r["base_run_id"] for r in by_model}[on_top["id"]] == sft["id"]


def test_a_dpo_run_on_an_openai_sft_run_reruns_locally_as_a_chain(env, tmp_path, tiny_llama):  # noqa: F811
    sft, dpo = openai_chain(tmp_path)
    assert dpo["base_run_id"] == sft["id"]
    again = ftm("rerun", dpo["id"], "-b", "local", "-m", tiny_llama, *LOCAL, "--wait", "--json", timeout=300)
    last = ok(again)
    assert last["status"] == "succeeded" and last["parent_run_id"] == dpo["id"]
    local = {r["id"]: r for r in ok(ftm("runs", "-b", "local", "--json"))}
    [link] = [r for r in local.values() if r["parent_run_id"] == sft["id"]]
    assert set(local) == {link["id"], last["id"]} and link["status"] == "succeeded"
    assert last["base_run_id"] == link["id"] and last["base_model"] == link["result_model"]
    assert f"{link['id']}  re-run of {sft['id']}" in again.err and f"on top of {link['id']}" in again.err
    lineage = ftm("datasets", "lineage", dpo["dataset_id"])
    assert f"on top of {link['id']} (SFT)" in lineage.out and "(preference, 12 examples" in lineage.out


def openai_chain(tmp_path) -> tuple[dict, dict]:
    """An SFT run on the OpenAI stand-in and a DPO run on top of its ft: model."""
    chat = tmp_path / "chat.jsonl"
    chat.write_text("".join(json.dumps({"messages": [{"role": "user", "content": f"{i} plus {i}?"},
                                                     {"role": "assistant", "content": f"{2 * i}"}]}) + "\n"
                            for i in range(12)))
    sft = ok(ftm("submit", chat, "-b", "openai", "--epochs", "1", "--wait", "--json"))
    dpo = ok(ftm("submit", preferences(tmp_path / "prefs.jsonl"), "-b", "openai", "-m", sft["result_model"],
                 "--method", "dpo", "--epochs", "1", "--wait", "--json"))
    return sft, dpo


def broken_model(tmp_path):
    """A folder that looks like a model at submit (a config.json) and fails the worker at once."""
    folder = tmp_path / "broken-model"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    return folder


def test_the_waiting_link_is_cancelled_when_its_upstream_fails(env, tmp_path):
    sft, dpo = openai_chain(tmp_path)
    again = ftm("rerun", dpo["id"], "-b", "local", "-m", broken_model(tmp_path), *LOCAL, "--json")
    assert again.code == 0, again
    waiting = again.json()
    assert waiting["status"] == "queued" and waiting["base_run_id"] and not waiting["provider_job_id"]
    watched = ftm("watch", waiting["id"], timeout=300)
    assert watched.code == 4, watched  # cancelled
    shown = ok(ftm("show", waiting["id"], "--json"))
    link = ok(ftm("show", waiting["base_run_id"], "--json"))
    assert link["status"] == "failed" and shown["status"] == "cancelled" and not shown["provider_job_id"]
    assert any(f"cancelled before it started: the run it trains on top of, {link['id']}, failed" in e["message"]
               for e in shown["events"])
