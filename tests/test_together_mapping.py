"""Re-runs across every backend: models through the base-model table, hyperparameters and options
by name (learning rate against OpenAI's multiplier, LoRA settings, method, sequence length), and
one line for what a target cannot take or a model the table cannot map."""

from __future__ import annotations

import pytest
from conftest import ftm
from test_together_backend import KEY, MODEL, env, server  # noqa: F401  (fixtures)

from ftmanager import registry
from ftmanager.errors import InvalidInput
from ftmanager.mapping import Mapped, map_model, map_settings


@pytest.fixture(autouse=True)
def home(ftm_home):
    """A fresh FTM_HOME: the base-model table is the shipped one unless a test writes the user's."""
    return ftm_home


LOCAL_OPTIONS = {"learning_rate": "1e-4", "lora_r": "8", "lora_alpha": "16", "lora_dropout": "0.1",
                 "target_modules": "q_proj,v_proj", "training_type": "qlora", "max_length": "512", "packing": "true"}


def parent(backend: str, model: str, options: dict | None = None, resolved: dict | None = None) -> dict:
    return {"backend": backend, "base_model": model, "options": options or {},
            "hyperparameters": {"n_epochs": "auto", "batch_size": "auto", "learning_rate_multiplier": "auto"},
            "resolved_hyperparameters": resolved or {}}


def mapped(run: dict, target: str) -> tuple[str, Mapped]:
    source, to = registry.load(run["backend"]), registry.load(target)
    out = map_settings(run, source, to, {}, {})
    return map_model(run, to, out), out


def test_an_openai_run_goes_to_together_on_the_tables_model_with_what_it_resolved():
    run = parent("openai", "gpt-4o-mini-2024-07-18", resolved={"n_epochs": 3, "batch_size": 1,
                                                              "learning_rate_multiplier": 1.8})
    model, out = mapped(run, "together")
    assert model == MODEL
    assert out.hyperparameters == {"n_epochs": 3, "batch_size": 1, "learning_rate_multiplier": 1.8}
    assert f"model={MODEL} (the gpt-4o-mini row: together trains llama-3.1-8b-instruct instead)" in out.notes
    assert out.dropped == []


def test_local_options_carry_to_together_by_name_and_qlora_becomes_lora():
    run = parent("local", "HuggingFaceTB/SmolLM2-135M-Instruct", LOCAL_OPTIONS)
    out = map_settings(run, registry.load("local"), registry.load("together"), {}, {})
    carried = {k: v for k, v in LOCAL_OPTIONS.items() if k != "packing"}
    assert out.options == {**carried, "training_type": "lora"}
    assert "training_type=qlora -> lora (together has no qlora)" in out.notes
    assert out.dropped == ["packing=true (together has no such option)"]


def test_an_old_local_runs_method_is_read_as_its_training_type():
    """Local's and Together's training_type was called method: old runs' rows still re-run as they trained."""
    run = parent("local", "HuggingFaceTB/SmolLM2-135M-Instruct", {"method": "qlora"}, resolved={"method": "qlora"})
    local = map_settings(run, registry.load("local"), registry.load("local"), {}, {})
    assert local.options == {"training_type": "qlora"} and local.dropped == []
    together = map_settings(run, registry.load("local"), registry.load("together"), {}, {})
    assert together.options == {"training_type": "lora"}
    old_together = parent("together", MODEL, {"method": "full"}, resolved={"method": "full"})
    home = map_settings(old_together, registry.load("together"), registry.load("together"), {}, {})
    assert home.options == {"training_type": "full"} and "method=full -> training_type (together's name for it)" in home.notes


def test_a_model_with_no_together_row_is_one_line_naming_the_table():
    with pytest.raises(InvalidInput, match=r"smollm2-135m-instruct row has no together model\. Pass --model"):
        mapped(parent("local", "HuggingFaceTB/SmolLM2-135M-Instruct"), "together")


def test_together_full_training_goes_home_as_full_and_fireworks_says_it_cannot():
    run = parent("together", MODEL, {"training_type": "full", "learning_rate": "2e-5", "max_length": "4096"})
    model, home = mapped(run, "local")
    assert model == "meta-llama/Llama-3.1-8B-Instruct"  # the same weights, at home
    assert home.options == {"training_type": "full", "learning_rate": "2e-5", "max_length": "4096"}
    model, fw = mapped(run, "fireworks")
    assert model == "accounts/fireworks/models/llama-v3p1-8b-instruct"
    assert fw.options == {"learning_rate": "2e-5", "max_context_length": "4096"}
    assert "max_length=4096 -> max_context_length (fireworks's name for it)" in fw.notes
    assert fw.dropped == ["training_type=full (fireworks has no such option)"]


def test_together_to_openai_turns_the_rate_into_a_multiplier_and_drops_lora_settings():
    run = parent("together", MODEL, {"learning_rate": "2e-5", "lora_r": "16"})
    with pytest.raises(InvalidInput, match="llama-3.1-8b-instruct row has no openai model"):
        mapped(run, "openai")
    out = map_settings(run, registry.load("together"), registry.load("openai"), {}, {})
    assert out.hyperparameters["learning_rate_multiplier"] == pytest.approx(2.0)  # Together's base rate is 1e-5
    assert out.dropped == ["lora_r=16 (openai has no such option)"]


def test_rerun_maps_the_model_through_the_users_table_and_refuses_what_it_cannot_map(
        env, chat_file, ftm_home):  # noqa: F811
    first = ftm("submit", chat_file, "-b", "fake", "--wait", "--json").json()
    refused = ftm("rerun", first["id"], "--backend", "together")
    assert refused.code == 1 and len(refused.err.strip().splitlines()) == 1
    assert "fake-ok (fake) is in no row of the base-model table" in refused.err and "base_models.toml" in refused.err
    assert len(ftm("runs", "--json").json()) == 1  # nothing recorded
    (ftm_home / "base_models.toml").write_text(f'[models."fake"]\nfake = "fake-ok"\ntogether = "{MODEL}"\n')
    rerun = ftm("rerun", first["id"], "--backend", "together", "--wait", "--json")
    assert rerun.code == 0, rerun
    child = rerun.json()
    assert child["base_model"] == MODEL and child["status"] == "succeeded"
    assert f"model={MODEL} (the fake row)" in rerun.err
    compared = ftm("compare", first["id"], child["id"], "--json").json()["runs"]
    assert [(r["backend"], r["method"]) for r in compared] == [("fake", None), ("together", "lora")]


def dpo_parent(backend: str, model: str, asked: dict, resolved: dict | None = None) -> dict:
    run = parent(backend, model, resolved=resolved)
    run["hyperparameters"].update(asked)
    return run


def test_a_dpo_run_carries_its_method_and_beta_by_name_to_every_backend():
    run = dpo_parent("openai", "gpt-4o-mini-2024-07-18", {"method": "dpo", "beta": "auto"},
                     resolved={"n_epochs": 3, "batch_size": 1, "learning_rate_multiplier": 1.8, "beta": 0.1})
    _model, out = mapped(run, "together")
    assert out.hyperparameters["method"] == "dpo" and out.hyperparameters["beta"] == 0.1
    assert "beta=0.1 (resolved from auto)" in out.notes
    imported = dpo_parent("together", MODEL, {"method": "dpo", "dpo_beta": 0.4})  # Together's own name
    home = map_settings(imported, registry.load("together"), registry.load("openai"), {}, {})
    assert (home.hyperparameters["method"], home.hyperparameters["beta"]) == ("dpo", 0.4)


def test_a_dpo_run_re_runs_with_its_beta_and_a_new_one_overrides(env, tmp_path):
    import sdk_backends as kit

    prefs = kit.preferences(tmp_path / "prefs.jsonl")
    first = ftm("submit", prefs, "-b", "together", "-m", MODEL, "--method", "dpo", "--beta", "0.3", "--json")
    assert first.code == 0, first
    again = ftm("rerun", first.json()["id"], "-b", "together", "--json")
    over = ftm("rerun", first.json()["id"], "-b", "together", "--beta", "0.7", "--json")
    assert again.code == 0 and over.code == 0, (again, over)
    sent = [env.state.jobs[r.json()["provider_job_id"]].asked["training_method"] for r in (again, over)]
    assert [(s["method"], s["dpo_beta"]) for s in sent] == [("dpo", 0.3), ("dpo", 0.7)]
    assert "method=dpo" in again.err
