"""Runs through every status with the fake provider plugin, as a user drives them from `ftm`."""

from __future__ import annotations

import json
import sqlite3

import pytest

from conftest import ftm


def fake_jobs(ftm_home) -> list[dict]:
    from ftm_fake_backend import FakeBackend

    return FakeBackend().jobs()


def one_line_error(result, *needles) -> None:
    assert result.code == 1, result
    assert result.err.startswith("Error: "), result
    assert len(result.err.strip().splitlines()) == 1, result
    for needle in needles:
        assert needle in result.err, result


def test_submit_wait_records_everything_the_provider_reported(ftm_home, chat_file):
    result = ftm("submit", chat_file, "--backend", "fake", "--model", "fake-ok", "--epochs", "3",
                 "--suffix", "demo", "--seed", "7", "--wait", "--json")
    assert result.code == 0, result
    run = result.json()
    assert run["status"] == "succeeded"
    assert run["result_model"] == f"fake:{run['provider_job_id']}"
    assert run["hyperparameters"] == {"n_epochs": 3, "batch_size": "auto", "learning_rate_multiplier": "auto"}
    assert run["resolved_hyperparameters"]["learning_rate_multiplier"] == 2.0
    assert run["trained_tokens"] == 1234 and run["finished_at"]
    shown = ftm("show", run["id"], "--json").json()
    assert [m["step"] for m in shown["metrics"]] == [1, 2, 3]
    assert shown["metrics"][-1]["train_loss"] == pytest.approx(2 / 3)
    assert [c["model_id"] for c in shown["checkpoints"]][-1].endswith("ckpt-step-3")
    messages = [e["message"] for e in shown["events"]]
    assert messages[0].startswith("started fake job") and "fake: now succeeded" in messages
    assert len(messages) == len(set(e["provider_event_id"] for e in shown["events"]))


def test_a_failed_run_keeps_its_error_and_watch_says_so(ftm_home, chat_file):
    result = ftm("submit", chat_file, "-b", "fake", "-m", "fake-fail", "--wait")
    assert result.code == 3, result
    assert "invalid_n_examples" in result.err
    run_id = result.out.split()[0]
    text = ftm("show", run_id).out
    assert "error: invalid_n_examples: the fake job failed (param: training_file)" in text
    assert ftm("watch", run_id).code == 3


def test_an_unknown_status_is_kept_verbatim(ftm_home, chat_file):
    from ftmanager import jobs

    run = jobs.submit(str(chat_file), "fake", "fake-odd")
    assert run["status"] == "compacting"
    listed = ftm("runs", "--status", "compacting", "--json").json()
    assert [r["id"] for r in listed] == [run["id"]]
    assert ftm("watch", run["id"]).code == 0
    assert jobs.show(run["id"])["status"] == "succeeded"


def test_a_refused_start_fails_the_run_with_one_line(ftm_home, chat_file):
    result = ftm("submit", chat_file, "-b", "fake", "-m", "fake-refuse")
    one_line_error(result, "refused the job")
    runs = ftm("runs", "--json").json()
    assert [r["status"] for r in runs] == ["failed"]
    assert "refused" in runs[0]["error_message"]
    assert fake_jobs(ftm_home) == []


def test_an_interrupted_start_is_recovered_by_sync_without_a_second_job(ftm_home, chat_file):
    result = ftm("submit", chat_file, "-b", "fake", "-m", "fake-drop")
    one_line_error(result, "could not confirm", "ftm sync")
    [run] = ftm("runs", "--json").json()
    assert run["status"] == "created" and run["provider_job_id"] is None
    assert len(fake_jobs(ftm_home)) == 1  # the provider did create it
    synced = ftm("sync", "--json")
    assert synced.code == 0, synced
    assert synced.json()[0]["run"]["provider_job_id"] == fake_jobs(ftm_home)[0]["id"]
    assert ftm("watch", run["id"]).code == 0
    assert len(fake_jobs(ftm_home)) == 1
    assert ftm("show", run["id"], "--json").json()["status"] == "succeeded"


def test_cancel_pause_and_resume(ftm_home, chat_file):
    run = ftm("submit", chat_file, "-b", "fake", "-m", "fake-slow", "--json").json()
    assert run["status"] == "queued" and run["provider_job_id"]
    assert ftm("pause", run["id"], "--json").json()["status"] == "paused"
    assert ftm("resume", run["id"], "--json").json()["status"] == "running"
    assert ftm("cancel", run["id"], "--json").json()["status"] == "cancelled"
    assert ftm("watch", run["id"]).code == 4
    one_line_error(ftm("cancel", run["id"]), "already cancelled")


def test_uploads_are_recorded_once_per_dataset_and_account(ftm_home, chat_file):
    for _ in range(2):
        assert ftm("submit", chat_file, "-b", "fake", "--wait").code == 0
    conn = sqlite3.connect(ftm_home / "ftm.db")
    assert conn.execute("SELECT count(*), min(account) FROM uploads").fetchone() == (1, "fake://provider")
    assert conn.execute("SELECT count(*) FROM datasets").fetchone()[0] == 1
    assert conn.execute("SELECT count(DISTINCT id) FROM runs").fetchone()[0] == 2


def test_split_makes_a_seeded_recorded_validation_set(ftm_home, chat_file):
    first = ftm("submit", chat_file, "-b", "fake", "--split", "0.25", "--seed", "3", "--json").json()
    again = ftm("submit", chat_file, "-b", "fake", "--split", "0.25", "--seed", "3", "--json").json()
    assert first["split"] == {"fraction": 0.25, "seed": 3}
    assert first["validation_dataset_id"] and first["validation_dataset_id"] != first["dataset_id"]
    assert (first["dataset_id"], first["validation_dataset_id"]) == (again["dataset_id"], again["validation_dataset_id"])
    sizes = {d["id"]: d["n_examples"] for d in ftm("datasets", "list", "--json").json()}
    assert sizes[first["dataset_id"]] + sizes[first["validation_dataset_id"]] == 12
    assert sizes[first["validation_dataset_id"]] == 3


@pytest.mark.parametrize(
    "args, needle",
    [
        (["-b", "nope"], "no backend called 'nope'"),
        (["-b", "fake", "--epochs", "0"], "n_epochs must be between 1 and 50"),
        (["-b", "fake", "--epochs", "many"], "n_epochs must be a number or 'auto'"),
        (["-b", "fake", "--learning-rate-multiplier", "-1"], "learning_rate_multiplier must be above 0"),
        (["-b", "fake", "-p", "lora_r=8"], "has no option lora_r"),
        (["-b", "fake", "-p", "oops"], "-p expects key=value"),
        (["-b", "fake", "--split", "0.2", "--validation", "x.jsonl"], "cannot be used together"),
        (["-b", "fake", "--split", "1.5"], "--split must be between 0 and 1"),
        (["-b", "fake", "--suffix", "x" * 65], "--suffix must be 1 to 64 characters"),
    ],
)
def test_bad_submit_flags_are_one_line_and_record_nothing(ftm_home, chat_file, args, needle):
    one_line_error(ftm("submit", chat_file, *args), needle)
    assert ftm("runs", "--json").json() == []


def test_unknown_ids_are_one_line(ftm_home, chat_file):
    for args in (["show", "run-nope"], ["watch", "run-nope"], ["cancel", "nope"], ["datasets", "show", "nope"]):
        one_line_error(ftm(*args), "nope")


def test_every_listing_prints_pure_json(ftm_home, chat_file):
    run = ftm("submit", chat_file, "-b", "fake", "--wait", "--json").json()
    for args in (["runs"], ["show", run["id"]], ["datasets", "list"], ["datasets", "show", run["dataset_id"][:10]],
                 ["models"], ["backends"], ["sync"]):
        result = ftm(*args, "--json")
        assert result.code == 0, result
        json.loads(result.out)
    models = ftm("models", "--json").json()
    assert {m["model_id"] for m in models} >= {run["result_model"]}
    assert all(m["run_id"] == run["id"] for m in models)


def test_backends_lists_built_ins_and_plugins_with_their_options(ftm_home):
    rows = {b["name"]: b for b in ftm("backends", "--json").json()}
    assert {"openai", "local", "fake"} <= set(rows)
    assert rows["fake"]["options"] == {
        "note": {"help": "any text; recorded, otherwise ignored", "type": "str", "default": None},
        "loud": {"help": "print more (a flag made from a declared bool)", "type": "bool", "default": False}}
    assert rows["local"]["options"]["lora_r"] == {"help": "LoRA rank", "type": "int", "default": 16}
    text = ftm("backends").out
    assert "-p loud=...  print more (a flag made from a declared bool) (default: false)" in text


def test_a_start_error_that_is_no_refusal_leaves_the_run_for_sync(ftm_home, chat_file):
    result = ftm("submit", chat_file, "-b", "fake", "-m", "fake-lost")  # start() raises NotFound
    one_line_error(result, "could not confirm", "lost track of a file", "ftm sync")
    [run] = ftm("runs", "--json").json()
    assert run["status"] == "created" and run["error_message"] is None and fake_jobs(ftm_home) == []
    assert run["start_claim"] is None and run["cursor"] in (None, {})
    one_line_error(ftm("resume", run["id"]), "has no fake job to resume", "ftm sync")
    synced = ftm("sync", "--json")
    assert synced.code == 0, synced
    assert ftm("watch", run["id"]).code == 0
    assert [j["run_id"] for j in fake_jobs(ftm_home)] == [run["id"]]


def test_two_syncs_at_once_start_a_stranded_run_once(ftm_home, chat_file):
    import subprocess
    import sys

    one_line_error(ftm("submit", chat_file, "-b", "fake", "-m", "fake-lost"), "could not confirm")
    slow = {**__import__("os").environ, "FTM_FAKE_UPLOAD_SECONDS": "1.5"}  # start() takes a while
    procs = [subprocess.Popen([sys.executable, "-m", "ftmanager", "sync"], env=slow,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=60) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert len(fake_jobs(ftm_home)) == 1  # the second saw the first's live claim and left it alone
    [run] = ftm("runs", "--json").json()
    assert run["provider_job_id"] == fake_jobs(ftm_home)[0]["id"] and run["start_claim"] is None


def test_finished_at_is_when_the_provider_says_the_run_ended(ftm_home, chat_file):
    import time

    from ftm_fake_backend import FakeBackend
    from ftmanager.facts import iso

    run = ftm("submit", chat_file, "-b", "fake", "-m", "fake-slow", "--json").json()
    FakeBackend().cancel(run["provider_job_id"])  # cancelled at the provider while nobody polls
    ended = FakeBackend()._load(run["provider_job_id"])["finished_at"]
    time.sleep(1.2)
    polled = time.time()  # at least 1.2 s after the end: another second on the ledger's clock
    assert ftm("watch", run["id"]).code == 4
    finished = ftm("show", run["id"], "--json").json()["finished_at"]
    assert finished == iso(ended) and finished < iso(polled)


def test_a_model_the_backend_cannot_train_is_refused_before_anything_is_recorded(ftm_home, chat_file):
    one_line_error(ftm("submit", chat_file, "-b", "fake", "-m", "gpt-4o-mini"), "fake provider has no model gpt-4o-mini")
    assert ftm("runs", "--json").json() == [] and ftm("datasets", "list", "--json").json() == []


def test_concurrent_submits_upload_one_dataset_once(ftm_home, chat_file):
    import os
    import subprocess
    import sys

    from ftm_fake_backend import FakeBackend

    env = {**os.environ, "FTM_FAKE_UPLOAD_SECONDS": "0.3"}
    procs = [subprocess.Popen([sys.executable, "-m", "ftmanager", "submit", str(chat_file), "-b", "fake", "--json"],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(8)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0] * 8, outs
    runs = ftm("runs", "--json").json()
    assert len(runs) == 8 and all(r["provider_job_id"] for r in runs)
    assert FakeBackend().uploads() == [runs[0]["dataset_id"]]
    conn = sqlite3.connect(ftm_home / "ftm.db")
    assert conn.execute("SELECT count(*) FROM uploads").fetchone()[0] == 1


def test_backend_options_are_flags_listed_by_backend(ftm_home, chat_file):
    text = ftm("submit", "--help").out
    local, fake = text.index("Options of the local backend"), text.index("Options of the fake backend")
    local_section = text[local:].split("\n\nOptions of the ")[0]  # other backends share some names
    for flag in ("--lora-r N", "--quantize / --no-quantize", "--learning-rate X", "--max-length N", "--gpus N"):
        assert flag in local_section, flag
    assert fake < text.index("--loud / --no-loud") and "(default: false)" in text
    assert "Options of the local backend" in ftm("rerun", "--help").out
    run = ftm("submit", chat_file, "-b", "fake", "--note", "hi", "--loud", "-p", "note=overridden", "--json").json()
    assert run["options"] == {"note": "hi", "loud": True}
    assert ftm("submit", chat_file, "-b", "fake", "-p", "note=still", "--json").json()["options"] == {"note": "still"}
    refused = ftm("submit", chat_file, "-b", "fake", "--no-quantize")
    one_line_error(refused, "--quantize/--no-quantize is an option of the local backend, not of fake",
                   "--note, --loud/--no-loud")
    one_line_error(ftm("rerun", run["id"], "-b", "fake", "--lora-r", "8"), "--lora-r is an option of the ", "local")
    assert len(ftm("runs", "--json").json()) == 2


def test_a_copied_ftm_home_works_from_its_new_place(ftm_home, chat_file, tmp_path, monkeypatch):
    import shutil

    run = ftm("submit", chat_file, "-b", "fake", "--split", "0.25", "--wait", "--json").json()
    stored = sqlite3.connect(ftm_home / "ftm.db").execute("SELECT path FROM datasets").fetchall()
    assert stored and all(not p.startswith("/") for (p,) in stored)
    moved = tmp_path / "restored-home"
    shutil.copytree(ftm_home, moved)
    shutil.rmtree(ftm_home)
    monkeypatch.setenv("FTM_HOME", str(moved))
    shown = ftm("datasets", "show", run["dataset_id"], "--json").json()
    assert shown["path"].startswith(str(moved)) and shown["n_examples"] == 9
    exported = tmp_path / "out.jsonl"
    assert ftm("datasets", "export", run["dataset_id"], "--to", "openai", "-o", exported).code == 0
    assert len(exported.read_text().splitlines()) == 9
    assert ftm("show", run["id"]).code == 0
    child = ftm("rerun", run["id"], "-b", "fake", "--wait", "--json")
    assert child.code == 0 and child.json()["status"] == "succeeded", child
    assert not ftm_home.exists()


@pytest.mark.parametrize(
    "args, env, needle",
    [
        (["runs", "--limit", "9" * 30], {}, None),
        (["runs", "--status", "\udcff"], {}, "is not valid UTF-8 text"),
        (["show", "\udcff"], {}, "is not valid UTF-8 text"),
        (["submit", "CHAT", "-b", "fake", "--suffix", "\udcff"], {}, "is not valid UTF-8 text"),
        (["submit", "CHAT", "-b", "fake", "--epochs", "9" * 5000], {}, "n_epochs must be a number or 'auto', not '999"),
        (["runs"], {"FTM_BUSY_TIMEOUT": "soon"}, "FTM_BUSY_TIMEOUT must be a number of seconds"),
        (["submit", "CHAT", "-b", "openai"], {"FTM_OPENAI_TIMEOUT": "x", "OPENAI_API_KEY": "k"}, "FTM_OPENAI_TIMEOUT must be"),
    ],
)
def test_bad_input_to_run_commands_is_one_line(ftm_home, chat_file, args, env, needle):
    result = ftm(*[chat_file if a == "CHAT" else a for a in args], env=env)
    assert "Traceback" not in result.err, result
    if needle is None:
        assert result.code == 0, result
        return
    one_line_error(result, needle)
    assert len(result.err) < 300
