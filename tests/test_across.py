"""Across providers: re-run, compare, evaluate and trace lineage, as a user does from `ftm`."""

from __future__ import annotations

import json

import pytest

from conftest import ftm


def capitals(tmp_path, n=12):
    rows = [("France", "Paris"), ("Japan", "Tokyo"), ("Peru", "Lima"), ("Kenya", "Nairobi"),
            ("Canada", "Ottawa"), ("Egypt", "Cairo"), ("Norway", "Oslo"), ("Chile", "Santiago"),
            ("India", "New Delhi"), ("Spain", "Madrid"), ("Italy", "Rome"), ("Cuba", "Havana")][:n]
    path = tmp_path / "capitals.jsonl"
    path.write_text("".join(json.dumps({"messages": [
        {"role": "user", "content": f"What is the capital of {c}?"},
        {"role": "assistant", "content": json.dumps({"country": c, "capital": cap})}]}) + "\n"
        for c, cap in rows))
    return path


def test_rerun_maps_settings_links_the_parent_and_says_what_it_did(ftm_home, tmp_path):
    parent = ftm("submit", capitals(tmp_path), "-b", "fake", "--seed", "5", "--suffix", "caps",
                 "--split", "0.25", "--wait", "--json").json()
    result = ftm("rerun", parent["id"], "-b", "fake", "-m", "fake-odd", "--wait", "--json")
    assert result.code == 0, result
    child = result.json()
    assert child["parent_run_id"] == parent["id"] and child["status"] == "succeeded"
    assert (child["dataset_id"], child["validation_dataset_id"]) == (parent["dataset_id"], parent["validation_dataset_id"])
    assert (child["seed"], child["suffix"], child["base_model"]) == (5, "caps", "fake-odd")
    # the parent trained with 3 epochs and multiplier 2.0 resolved from "auto": the child asks for those
    assert child["hyperparameters"] == {"n_epochs": 3, "batch_size": 1, "learning_rate_multiplier": 2.0}
    assert "n_epochs=3 (resolved by fake from auto)" in result.err
    events = [e["message"] for e in ftm("show", child["id"], "--json").json()["events"]]
    assert any(m.startswith(f"re-run of {parent['id']}") for m in events)


def test_rerun_works_when_the_first_provider_refused(ftm_home, tmp_path):
    refused = ftm("submit", capitals(tmp_path), "-b", "fake", "-m", "fake-refuse")
    assert refused.code == 1
    [parent] = ftm("runs", "--json").json()
    child = ftm("rerun", parent["id"], "-b", "fake", "-m", "fake-ok", "--epochs", "2", "--wait", "--json").json()
    assert child["status"] == "succeeded" and child["hyperparameters"]["n_epochs"] == 2


def test_rerun_says_what_cannot_be_mapped():
    from ftmanager import registry
    from ftmanager.mapping import map_settings

    local, openai = registry.load("local"), registry.load("openai")
    parent = {"hyperparameters": {"n_epochs": 2, "batch_size": "auto", "learning_rate_multiplier": "auto"},
              "options": {"learning_rate": "1e-4", "lora_r": "8"}}
    mapped = map_settings(parent, local, openai, {}, {})
    assert mapped.hyperparameters["learning_rate_multiplier"] == pytest.approx(1e-4 / local.base_learning_rate)
    assert mapped.hyperparameters["n_epochs"] == 2
    assert mapped.options == {}
    assert any("lora_r=8" in d for d in mapped.dropped)
    back = map_settings({"hyperparameters": {}, "resolved_hyperparameters": {"n_epochs": 4, "batch_size": 2},
                         "options": {}}, openai, local, {"batch_size": 8}, {"lora_r": "4"})
    assert back.hyperparameters["n_epochs"] == 4 and back.hyperparameters["batch_size"] == 8
    assert back.options == {"lora_r": "4"}


def test_eval_scores_and_records_every_generation_and_compare_shows_them(ftm_home, tmp_path):
    data = capitals(tmp_path)
    first = ftm("submit", data, "-b", "fake", "--wait", "--json").json()
    second = ftm("submit", data, "-b", "fake", "-m", "fake-odd", "--epochs", "2", "--wait", "--json").json()
    heldout = tmp_path / "heldout.jsonl"
    heldout.write_text("".join(data.read_text().splitlines(keepends=True)[:3]))
    result = ftm("eval", first["id"], "--data", heldout, "--baseline", "--json")
    assert result.code == 0, result
    tuned, base = result.json()
    assert tuned["exact_match"] == 1.0 and tuned["chrf"] == pytest.approx(1.0)
    assert base["label"] == "base:fake:fake-ok" and base["exact_match"] == 0.0
    assert [g["output"] for g in base["generations"]] == ["I do not know."] * 3
    import sqlite3

    conn = sqlite3.connect(ftm_home / "ftm.db")
    assert conn.execute("SELECT count(*) FROM generations").fetchone()[0] == 6
    compared = ftm("compare", first["id"], second["id"], "--json").json()
    assert compared["differing_hyperparameters"] == ["hp.n_epochs"]
    a, b = compared["runs"]
    assert a["eval.exact_match"] == 1.0 and "eval.exact_match" not in b
    assert a["final_train_loss"] == pytest.approx(2 / 3) and a["best_train_loss"] == pytest.approx(2 / 3)
    text = ftm("compare", first["id"], second["id"]).out
    assert "* hp.n_epochs" in text and "eval.exact_match" in text


def test_compare_plot_writes_a_png(ftm_home, tmp_path):
    data = capitals(tmp_path)
    ids = [ftm("submit", data, "-b", "fake", "--wait", "--json").json()["id"] for _ in range(2)]
    out = tmp_path / "curves.png"
    for by in ("step", "epoch"):
        result = ftm("compare", *ids, "--plot", out, "--by", by)
        assert result.code == 0, result
        assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 10_000
    bad = ftm("compare", ids[0])
    assert bad.code == 1 and "at least two runs" in bad.err


def test_lineage_shows_dataset_uploads_runs_reruns_and_models(ftm_home, tmp_path):
    parent = ftm("submit", capitals(tmp_path), "-b", "fake", "--wait", "--json").json()
    child = ftm("rerun", parent["id"], "-b", "fake", "--wait", "--json").json()
    tree = ftm("datasets", "lineage", parent["dataset_id"][:8], "--json").json()
    assert tree["uploads"][0]["file_id"].startswith("file-")
    [node] = tree["runs"]
    assert node["run"]["id"] == parent["id"]
    assert {m["model_id"] for m in node["models"]} >= {parent["result_model"]}
    assert node["reruns"][0]["run"]["id"] == child["id"]
    text = ftm("datasets", "lineage", parent["dataset_id"][:8]).out
    assert parent["id"] in text and child["id"] in text and f"re-run {child['id']}" in text


def test_scores_match_hand_computed_values():
    from ftmanager.evaluation import score
    from ftmanager.metrics import rouge_l, token_f1

    assert token_f1("the cat sat", "the cat sat down") == pytest.approx(2 * 1 * 0.75 / 1.75)
    # LCS of (a b c d) and (a c b d) is 3 tokens long
    assert rouge_l("a b c d", "a c b d") == pytest.approx(0.75)
    # words in any script count (rouge-score's own tokenizer would drop "café"): LCS 1 of 3 and 2
    assert rouge_l("café au lait", "Café noir") == pytest.approx(2 * (1 / 3) * 0.5 / (1 / 3 + 0.5))
    assert rouge_l("", "") == 1.0 and rouge_l("", "x") == 0.0
    assert score("Paris", "paris")["exact_match"] == 1.0
    assert score("Lyon", "Paris") == {"exact_match": 0.0, "token_f1": 0.0, "rouge_l": 0.0,
                                      "chrf": pytest.approx(0.0, abs=0.2), "bleu": 0.0}
    assert score("the cat sat on the mat", "the cat sat on the mat")["bleu"] == pytest.approx(1.0)
    assert score("Paris", "Paris")["bleu"] == pytest.approx(1.0)  # short answers are not zeroed by missing 4-grams


def test_the_python_api_gives_what_the_cli_gives(ftm_home, tmp_path):
    import ftmanager

    data = capitals(tmp_path)
    run = ftmanager.submit(str(data), "fake", hyperparameters={"n_epochs": 2}, wait=True)
    assert run["status"] == "succeeded" and run["hyperparameters"]["n_epochs"] == 2
    assert ftmanager.show(run["id"]) == ftm("show", run["id"], "--json").json()
    child, mapped = ftmanager.rerun(run["id"], "fake", "fake-odd", wait=True)
    assert child["parent_run_id"] == run["id"] and "batch_size=1 (resolved by fake from auto)" in mapped.summary()
    via_cli = ftm("compare", run["id"], child["id"], "--json").json()
    assert ftmanager.compare([run["id"], child["id"]]) == {k: v for k, v in via_cli.items() if k != "plot"}
    assert [d["id"] for d in ftmanager.datasets()] == [d["id"] for d in ftm("datasets", "list", "--json").json()]
    assert ftmanager.lineage(run["dataset_id"]) == ftm("datasets", "lineage", run["dataset_id"], "--json").json()


def test_eval_of_an_openai_run_goes_through_chat_completions(ftm_home, tmp_path, monkeypatch):
    from ftmanager.standin import standin

    with standin(speed=50) as server:
        monkeypatch.setenv("OPENAI_BASE_URL", server.url)
        monkeypatch.setenv("OPENAI_API_KEY", "sk-test-eval")
        monkeypatch.setenv("FTM_POLL_SCALE", "0.05")
        data = capitals(tmp_path)
        submitted = ftm("submit", data, "-b", "openai", "-m", "gpt-4o-mini-2024-07-18", "--wait", "--json")
        run = submitted.json()
        assert run["status"] == "succeeded" and run["result_model"].startswith("ft:gpt-4o-mini")
        # off a terminal, about one step event in ten is printed, and the last one
        steps = [line for line in submitted.err.splitlines() if "  Step " in line]
        total = run["total_steps"] or len(ftm("show", run["id"], "--json").json()["metrics"])
        assert 5 <= len(steps) <= 12, steps
        assert f"Step {total}/{total}:" in steps[-1]
        heldout = tmp_path / "seen.jsonl"
        heldout.write_text("".join(data.read_text().splitlines(keepends=True)[:2]))
        result = ftm("eval", run["id"], "--data", heldout, "--baseline", "--json")
        assert result.code == 0, result
        tuned, base = result.json()
        # the stand-in's ft: model answers from its training file; its base model knows nothing
        assert tuned["exact_match"] == 1.0 and base["exact_match"] == 0.0
        assert base["model_id"] == "gpt-4o-mini-2024-07-18"


def test_compare_shows_each_runs_training_method(ftm_home, tmp_path):
    from ftmanager.ledger import ledger

    hosted = ftm("submit", capitals(tmp_path), "-b", "fake", "--wait", "--json").json()
    for run_id, options, resolved in (("run-qlora", {}, {}), ("run-lora", {"quantize": "false"}, {}),
                                      ("run-full", {"training_type": "full"}, {"training_type": "full", "n_epochs": 1}),
                                      # an old run says method for training_type; a DPO run's method is dpo
                                      ("run-old", {"method": "full"}, {"method": "full", "n_epochs": 1}),
                                      ("run-dpo", {}, {"method": "dpo", "training_type": "lora"})):
        ledger().create_run({"id": run_id, "backend": "local", "base_model": "m", "dataset_id": hosted["dataset_id"],
                             "status": "succeeded", "options": options, "resolved_hyperparameters": resolved,
                             "hyperparameters": {"method": resolved["method"]} if resolved.get("method") == "dpo" else {}})
    compared = ftm("compare", hosted["id"], "run-qlora", "run-lora", "run-full", "run-old", "run-dpo",
                   "--json").json()["runs"]
    assert [c["method"] for c in compared] == [None, "qlora", "lora", "full", "full", "dpo"]  # as the runs page says
    assert [c["training_type"] for c in compared] == [None, "qlora", "lora", "full", "full", "lora"]
    row = next(line for line in ftm("compare", "run-qlora", "run-full").out.splitlines() if "method" in line)
    assert row.split()[-2:] == ["qlora", "full"]
