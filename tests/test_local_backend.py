"""The local backend end to end on a tiny Llama: real detached workers, polled until done."""

from __future__ import annotations

import json
import os
import signal
import time

import pytest

from fixtures_local import tiny_dataset, tiny_llama, tiny_spec, wide_tiny_llama  # noqa: F401  (fixture)

pytest.importorskip("peft")

from ftm_backends.local import LocalBackend  # noqa: E402
from ftm_backends.local.trainer import rundir  # noqa: E402
from ftmanager.errors import FtmError, Refused  # noqa: E402


def follow(backend, job, until=None, timeout=120):
    """Poll until terminal (or until(progress) is true); everything seen, in order."""
    seen = {"statuses": [], "events": [], "metrics": [], "checkpoints": [], "last": None}
    cursor, deadline = {}, time.time() + timeout
    while time.time() < deadline:
        p = backend.poll(job, cursor)
        cursor = p.cursor
        if not seen["statuses"] or seen["statuses"][-1] != p.status:
            seen["statuses"].append(p.status)
        for key in ("events", "metrics", "checkpoints"):
            seen[key] += getattr(p, key)
        seen["last"] = p
        if p.status in ("succeeded", "failed", "cancelled") or (until and until(seen)):
            return seen
        time.sleep(0.05)
    raise AssertionError(f"run still {p.status} after {timeout} s")


def final_loss(seen) -> float:
    return [m for m in seen["metrics"] if m["step"] == seen["last"].total_steps][-1]["train_loss"]


def test_a_run_reports_like_a_hosted_one(tmp_path, tiny_llama):  # noqa: F811
    backend = LocalBackend()
    spec = tiny_spec(tmp_path, tiny_llama, n_epochs=2, batch_size=4, quantize="true",
                     validation=tiny_dataset(3))
    t0 = time.time()
    job = backend.start(spec, uploads=None)
    assert time.time() - t0 < 2, "start() must return at once"
    seen = follow(backend, job)
    last = seen["last"]
    assert last.status == "succeeded", last.error
    assert seen["statuses"][-2:] == ["running", "succeeded"]
    assert last.result_model == "local:run-tiny" and (tmp_path / "runs/run-tiny/adapter/adapter_config.json").exists()
    assert last.hyperparameters["n_epochs"] == 2 and last.hyperparameters["learning_rate"] == 0.01
    assert last.total_steps == 6 and [m["step"] for m in seen["metrics"]] == [1, 2, 3, 4, 5, 6]
    assert {"train_loss", "train_accuracy"} <= set(seen["metrics"][0])
    assert {"valid_loss", "valid_mean_token_accuracy"} <= set(seen["metrics"][2])  # end of epoch 1
    assert [(c.step, c.model_id) for c in seen["checkpoints"]] == [
        (3, "local:run-tiny:step-3"), (6, "local:run-tiny:step-6")]
    ids = [e.id for e in seen["events"]]
    assert len(ids) == len(set(ids)) and "The job has successfully completed" in seen["events"][-1].message
    assert last.trained_tokens > 0 and last.eta_seconds == 0.0
    ended = [r for _, r in rundir.read_from(spec.run_dir, 0)[0] if r["kind"] == "status"][-1]
    assert last.finished_at == ended["t"], "when the run ended, not when it was polled"
    assert backend.poll(job, {}).finished_at == ended["t"], "on every later poll too"


def test_validation_passes_leave_qlora_training_as_it_was(tmp_path, wide_tiny_llama):  # noqa: F811
    """On every CPU. On CPUs with AVX512-BF16, bitsandbytes repacks 4-bit weights the first
    time they run in eval mode under no_grad (the 32-wide tiny model's are too narrow: its
    runs died), and training after it computed differently. Validating at every step must
    change no training loss."""
    backend = LocalBackend()
    common = dict(n_epochs=2, batch_size=4, quantize="true")
    checked = backend.start(tiny_spec(tmp_path / "checked", wide_tiny_llama, validation=tiny_dataset(3),
                                      eval_every=1, **common), uploads=None)
    plain = backend.start(tiny_spec(tmp_path / "plain", wide_tiny_llama, **common), uploads=None)
    checked_seen, plain_seen = follow(backend, checked), follow(backend, plain)
    assert checked_seen["last"].status == "succeeded", checked_seen["last"].error
    assert all("valid_loss" in m for m in checked_seen["metrics"])  # eval_every=1
    # The same arithmetic in the same order: equal within float noise (1e-6).
    assert [m["train_loss"] for m in checked_seen["metrics"]] == pytest.approx(
        [m["train_loss"] for m in plain_seen["metrics"]], abs=1e-6)


def test_a_copied_ftm_home_finds_base_models_inside_it(tmp_path, tiny_llama, monkeypatch):  # noqa: F811
    import shutil

    from ftm_backends.local.modeling import loading as models

    old, new = tmp_path / "old-home", tmp_path / "new-home"
    monkeypatch.setenv("FTM_HOME", str(old))
    base = shutil.copytree(tiny_llama, old / "models" / "tiny")
    backend = LocalBackend()
    job = backend.start(tiny_spec(old, base, n_epochs=8, batch_size=4, run_id="run-moved"), uploads=None)
    follow(backend, job, until=lambda seen: seen["checkpoints"])
    backend.cancel(job)
    assert follow(backend, job)["last"].status == "cancelled"
    shutil.copytree(old, new)  # a backup restored elsewhere, or a home moved to a new disk
    shutil.rmtree(old)
    monkeypatch.setenv("FTM_HOME", str(new))
    moved = tiny_spec(new, new / "models" / "tiny", n_epochs=8, batch_size=4, run_id="run-moved")
    job = str(moved.run_dir)
    backend.resume(job, moved)  # the spec as the ledger gives it now
    assert follow(backend, job)["last"].status == "succeeded"
    for adapter in (new / "runs/run-moved/adapter", new / "runs/run-moved/checkpoints/step-3/adapter"):
        assert models.target(str(adapter), "some/hub-id").base == str(new / "models" / "tiny")
    # an adapter saved before markers were relative holds an absolute path: still read
    (new / "runs/run-moved/adapter" / models.BASE_MARKER).write_text(str(tiny_llama))
    assert models.base_of(str(new / "runs/run-moved/adapter"), None) == str(tiny_llama)


def test_bad_option_values_are_refused_before_anything_runs(tmp_path, tiny_llama):  # noqa: F811
    backend = LocalBackend()
    with pytest.raises(Refused, match="lora_r must be a number"):  # a definite refusal: the run fails
        backend.start(tiny_spec(tmp_path, tiny_llama, lora_r="big"), uploads=None)
    with pytest.raises(Refused, match="OpenAI model"):
        backend.start(tiny_spec(tmp_path, "gpt-4o-mini"), uploads=None)
    backend.check_model("someone/some-model")  # a hub id: whether it downloads is the worker's to find
    with pytest.raises(FtmError, match="no option"):
        backend.check_options({"lora_rank": "8"})
    spec = tiny_spec(tmp_path, tiny_llama, learning_rate_multiplier="2")
    spec.options.pop("learning_rate")
    hp = backend.resolve(spec)
    assert hp["n_epochs"] == 8 and hp["learning_rate"] == pytest.approx(4e-4)  # 12 examples: 100 // 12


@pytest.fixture(scope="module")
def reference(tmp_path_factory, tiny_llama):  # noqa: F811
    """An uninterrupted run that the interrupted ones must end like."""
    tmp = tmp_path_factory.mktemp("reference")
    backend = LocalBackend()
    job = backend.start(tiny_spec(tmp, tiny_llama, tiny_dataset(40), n_epochs=4, batch_size=2), uploads=None)
    return backend, job


def started_like_the_reference(tmp_path, tiny_llama, until):  # noqa: F811
    """The reference's run, started and followed until(seen)."""
    backend = LocalBackend()
    spec = tiny_spec(tmp_path, tiny_llama, tiny_dataset(40), n_epochs=4, batch_size=2)
    job = backend.start(spec, uploads=None)
    follow(backend, job, until=until)
    return backend, spec, job


def test_a_killed_worker_is_noticed_and_resume_ends_at_the_same_loss(tmp_path, tiny_llama, reference):  # noqa: F811
    backend, spec, job = started_like_the_reference(tmp_path, tiny_llama, until=lambda seen: seen["checkpoints"])
    pid = json.loads((spec.run_dir / rundir.LAUNCH).read_text())["pid"]
    os.kill(pid, signal.SIGKILL)
    lost = follow(backend, job)
    assert lost["last"].status == "failed"
    assert lost["last"].error["code"] == "worker_lost" and str(pid) in lost["last"].error["message"]
    assert backend.resume(job, spec) == job
    resumed = follow(backend, job)
    assert resumed["last"].status == "succeeded" and "Resumed from checkpoint at step 20/80" in [
        e.message for e in resumed["events"]]
    assert final_loss(resumed) == pytest.approx(final_loss(follow(*reference)), abs=1e-6)


def test_cancel_stops_saves_and_resume_ends_at_the_same_loss(tmp_path, tiny_llama, reference):  # noqa: F811
    backend, spec, job = started_like_the_reference(tmp_path, tiny_llama, until=lambda seen: len(seen["metrics"]) >= 5)
    backend.cancel(job)
    stopped = follow(backend, job)
    assert stopped["last"].status == "cancelled"
    step = stopped["checkpoints"][-1].step
    assert step < 80 and (spec.run_dir / f"checkpoints/step-{step}/state.pt").exists()
    backend.resume(job, spec)
    resumed = follow(backend, job)
    assert resumed["last"].status == "succeeded"
    assert final_loss(resumed) == pytest.approx(final_loss(follow(*reference)), abs=1e-6)


def test_pause_waits_at_a_checkpoint_and_resume_carries_on_to_the_same_loss(tmp_path, tiny_llama, reference):  # noqa: F811
    backend, spec, job = started_like_the_reference(tmp_path, tiny_llama, until=lambda seen: len(seen["metrics"]) >= 5)
    backend.pause(job)
    paused = follow(backend, job, until=lambda seen: seen["last"].status == "paused")
    step = paused["metrics"][-1]["step"]
    assert paused["checkpoints"][-1].step == step and (spec.run_dir / f"checkpoints/step-{step}/state.pt").exists()
    assert f"Fine-tuning paused at step {step}; checkpoint saved" in [e.message for e in paused["events"]]
    time.sleep(1.5)
    still = follow(backend, job, until=lambda seen: True)
    assert still["last"].status == "paused" and still["metrics"][-1]["step"] == step, "no step while paused"
    assert rundir.worker_gone(spec.run_dir) is None, "the worker waits"
    with pytest.raises(FtmError, match="already paused"):
        backend.pause(job)

    assert backend.resume(job, spec) == job  # the same worker carries on
    follow(backend, job, until=lambda seen: seen["metrics"][-1]["step"] > step)
    backend.pause(job)
    follow(backend, job, until=lambda seen: seen["last"].status == "paused")
    os.kill(json.loads((spec.run_dir / rundir.LAUNCH).read_text())["pid"], signal.SIGKILL)
    while rundir.worker_gone(spec.run_dir) is None:
        time.sleep(0.05)
    assert backend.poll(job, {}).status == "paused", "a paused run whose worker died keeps its checkpoint"

    backend.resume(job, spec)  # relaunched from that checkpoint
    done = follow(backend, job)
    assert done["last"].status == "succeeded", done["last"].error
    assert [m["step"] for m in done["metrics"]] == sorted({m["step"] for m in done["metrics"]})
    assert final_loss(done) == pytest.approx(final_loss(follow(*reference)), abs=1e-6)


def test_find_knows_a_launched_run_and_nothing_else(ftm_home, tiny_llama):  # noqa: F811
    from ftmanager import paths

    backend = LocalBackend()
    assert backend.find("run-nope") is None
    spec = tiny_spec(ftm_home, tiny_llama, run_id="run-found", n_epochs=1)
    spec.run_dir = paths.run_dir("run-found")
    assert backend.start(spec, uploads=None) == "run-found"
    assert backend.find("run-found") == "run-found"
    assert follow(backend, "run-found")["last"].status == "succeeded"
