"""Local DPO through ftm's real worker on the tiny Llama: LoRA (the adapter switched off is the
reference) and full fine-tuning (a frozen copy of the base), with the DPO figures in the
progress file, the margin rising on the training pairs, and pause/resume as for SFT."""

from __future__ import annotations

import json

import pytest

from fixtures_local import tiny_llama, tiny_spec, wide_tiny_llama  # noqa: F401  (fixture)

pytest.importorskip("peft")

from test_local_backend import follow  # noqa: E402

from ftm_backends.local import LocalBackend  # noqa: E402
from ftm_backends.local.trainer import rundir  # noqa: E402

DPO_FIGURES = {"train_loss", "rewards/chosen", "rewards/rejected", "rewards/accuracies", "rewards/margins",
               "logps/chosen", "logps/rejected"}


def pair(i: int) -> dict:
    """A prompt whose preferred answer is 'zz' and whose other answer is 'qq'."""
    return {"input": {"messages": [{"role": "user", "content": f"say something {i}"}]},
            "preferred_output": [{"role": "assistant", "content": "zz"}],
            "non_preferred_output": [{"role": "assistant", "content": "qq"}]}


def pairs(n: int = 8) -> list[dict]:
    return [pair(i) for i in range(n)]


def figures(run_dir) -> list[dict]:
    """The metrics records of the progress file, as the worker wrote them."""
    records, _ = rundir.read_from(run_dir, 0)
    return [rec["data"] for _, rec in records if rec.get("kind") == "metrics"]


@pytest.mark.parametrize("training_type", ["lora", "full"])
def test_a_dpo_run_succeeds_and_raises_the_margin_on_its_pairs(tmp_path, tiny_llama, training_type):  # noqa: F811
    backend = LocalBackend()
    spec = tiny_spec(tmp_path, tiny_llama, pairs(), method="dpo", beta=0.5, n_epochs=4, batch_size=4,
                     validation=pairs(4), training_type=training_type, learning_rate=0.01 if training_type == "lora" else 0.002)
    seen = follow(backend, backend.start(spec, uploads=None), timeout=300)
    assert seen["last"].status == "succeeded", seen["last"].error
    assert seen["last"].hyperparameters["beta"] == 0.5 and seen["last"].hyperparameters["method"] == "dpo"
    assert any(f"({training_type}, DPO)" in e.message for e in seen["events"])
    written = figures(spec.run_dir)
    assert [m["step"] for m in written] == list(range(1, 9))
    assert DPO_FIGURES <= set(written[0]) and "valid_loss" in written[1] and "valid_rewards/accuracies" in written[1]
    assert [m["train_loss"] for m in seen["metrics"]] == [m["train_loss"] for m in written]
    # a property, not a budget: the chosen answer gains on the rejected one as training goes on
    assert written[0]["rewards/margins"] == pytest.approx(0.0, abs=1e-4), "the policy starts as its reference"
    assert written[-1]["rewards/margins"] > written[0]["rewards/margins"] + 0.05
    assert written[-1]["valid_rewards/accuracies"] == 1.0
    saved = spec.run_dir / ("model" if training_type == "full" else "adapter")
    assert saved.exists() and [c.step for c in seen["checkpoints"]] == [2, 4, 6, 8]


def test_a_paused_dpo_run_resumes_from_its_checkpoint_and_ends_where_an_unpaused_one_does(tmp_path, tiny_llama):  # noqa: F811
    backend, options = LocalBackend(), dict(method="dpo", n_epochs=10, batch_size=2)
    reference = follow(backend, backend.start(tiny_spec(tmp_path / "ref", tiny_llama, pairs(), **options), None),
                       timeout=300)
    spec = tiny_spec(tmp_path / "paused", tiny_llama, pairs(), **options)
    job = backend.start(spec, uploads=None)
    follow(backend, job, until=lambda seen: len(seen["metrics"]) >= 3)
    backend.pause(job)
    paused = follow(backend, job, until=lambda seen: seen["last"].status == "paused", timeout=120)
    step = paused["metrics"][-1]["step"]
    assert paused["checkpoints"][-1].step == step and (spec.run_dir / f"checkpoints/step-{step}/state.pt").exists()
    pid = json.loads((spec.run_dir / rundir.LAUNCH).read_text())["pid"]
    import os
    import signal

    os.kill(pid, signal.SIGKILL)  # the worker dies while paused: resume starts a new one from the checkpoint
    while rundir.worker_gone(spec.run_dir) is None:
        pass
    backend.resume(job, spec)
    done = follow(backend, job, timeout=300)
    assert done["last"].status == "succeeded", done["last"].error
    assert f"Resumed from checkpoint at step {step}/40" in [e.message for e in done["events"]]
    last = lambda seen: [m for m in seen["metrics"] if m["step"] == 40][-1]["train_loss"]  # noqa: E731
    assert last(done) == pytest.approx(last(reference), abs=1e-6)


def test_the_worker_reads_beta_from_the_record_and_the_loss_from_the_options(tmp_path, tiny_llama):  # noqa: F811
    from ftm_backends.local.trainer import dpo, preference
    from ftm_backends.local.trainer.options import resolve_options

    backend = LocalBackend()
    auto = tiny_spec(tmp_path, tiny_llama, pairs(), method="dpo", dpo_loss="ipo", label_smoothing="0.2")
    resolved = backend.resolve(auto)
    assert (resolved["method"], resolved["beta"]) == ("dpo", 0.1)  # "auto": OpenAI's and TRL's default
    chosen = preference.settings({"resolved_hyperparameters": resolved}, resolve_options(auto.options))
    assert chosen == dpo.Settings(beta=0.1, loss="ipo", label_smoothing=0.2)
    given = backend.resolve(tiny_spec(tmp_path, tiny_llama, pairs(), method="dpo", beta=1.5))
    assert given["beta"] == 1.5
    assert preference.settings({"resolved_hyperparameters": backend.resolve(tiny_spec(tmp_path, tiny_llama))},
                               resolve_options({})) is None  # a supervised run


def test_a_qlora_dpo_run_trains_on_the_4bit_base(tmp_path, wide_tiny_llama):  # noqa: F811
    backend = LocalBackend()
    spec = tiny_spec(tmp_path, wide_tiny_llama, pairs(), method="dpo", beta=0.5, n_epochs=4, batch_size=4,
                     quantize="true")  # qlora: tiny_spec says quantize=false unless told
    seen = follow(backend, backend.start(spec, uploads=None), timeout=300)
    assert seen["last"].status == "succeeded", seen["last"].error
    assert any("(qlora, DPO)" in e.message for e in seen["events"])
    written = figures(spec.run_dir)
    assert written[0]["rewards/margins"] == pytest.approx(0.0, abs=1e-4)
    assert written[-1]["rewards/margins"] > written[0]["rewards/margins"] + 0.02


def test_a_dpo_run_through_ftm_keeps_its_reward_figures_in_the_ledger_and_ftm_show(ftm_home, tmp_path, tiny_llama):  # noqa: F811
    from conftest import ftm
    from fixtures_local import write_jsonl

    from ftmanager import paths
    from ftmanager.ledger import ledger

    data, valid = write_jsonl(tmp_path / "pairs.jsonl", pairs()), write_jsonl(tmp_path / "valid.jsonl", pairs(4))
    done = ftm("submit", data, "-b", "local", "--model", tiny_llama, "--method", "dpo", "--beta", "0.5", "--epochs", "1",
               "--batch-size", "4", "--no-quantize", "-p", "device=cpu", "--validation", valid, "--wait", "--json",
               timeout=300)
    assert done.code == 0 and done.json()["status"] == "succeeded", done
    run_id = done.json()["id"]
    written = figures(paths.run_dir(run_id))
    assert ledger().metric_curve(run_id, "rewards/margins") == [(m["step"], m["rewards/margins"]) for m in written]
    assert ledger().metric_curve(run_id, "valid_rewards/accuracies")[-1] == (2, written[-1]["valid_rewards/accuracies"])
    shown = ftm("show", run_id)
    assert shown.code == 0, shown
    lines = shown.out.split("figures (last value):")[1].split("\n\n")[0].split("\n")
    assert lines[1].split() == ["rewards/margins", f"{written[-1]['rewards/margins']:.4f}"]  # DPO's first, in order
    assert {line.split()[0] for line in lines[1:]} == DPO_FIGURES - {"train_loss"} | {
        "valid_rewards/margins", "valid_rewards/accuracies"}


@pytest.mark.parametrize("method", ["supervised", "dpo"])
def test_bf16_autocast_trains_near_but_not_equal_to_float32(tmp_path, tiny_llama, method):  # noqa: F811
    """-p bf16=true computes the forward in bfloat16 (what makes it fast where the hardware has
    bf16): the run trains as the float32 one does, its losses a rounding away, never the same."""
    from fixtures_local import tiny_dataset

    backend = LocalBackend()
    rows = pairs() if method == "dpo" else tiny_dataset(8)
    jobs = {bf16: backend.start(tiny_spec(tmp_path / str(bf16), tiny_llama, rows, run_id=f"run-{bf16}",
                                          method=method, n_epochs=1, batch_size=4, bf16=bf16), None)
            for bf16 in ("false", "true")}  # both workers at once: two cores
    losses = {}
    for bf16, job in jobs.items():
        seen = follow(backend, job, timeout=300)
        assert seen["last"].status == "succeeded", seen["last"].error
        losses[bf16] = [m["train_loss"] for m in seen["metrics"]]
    assert len(losses["true"]) == len(losses["false"]) == 2
    assert losses["true"] != losses["false"]  # autocast ran: bfloat16 rounds differently
    assert losses["true"] == pytest.approx(losses["false"], rel=0.05, abs=0.02)
