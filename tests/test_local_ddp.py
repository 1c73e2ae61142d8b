"""gpus > 1 launches the worker through accelerate (DDP); on CPU it runs two processes on gloo."""

from __future__ import annotations

import pytest

from fixtures_local import tiny_dataset, tiny_llama, tiny_spec  # noqa: F401  (fixture)
from test_local_backend import follow

pytest.importorskip("accelerate")

from ftm_backends.local import LocalBackend  # noqa: E402


def test_two_process_ddp_trains_like_one_process(tmp_path, tiny_llama):  # noqa: F811
    backend = LocalBackend()
    # No dropout: then the two shards' summed gradients equal one process's exactly.
    common = dict(n_epochs=2, batch_size=4, lora_dropout="0")
    ddp = backend.start(tiny_spec(tmp_path / "ddp", tiny_llama, gpus=2, **common), uploads=None)
    single = backend.start(tiny_spec(tmp_path / "one", tiny_llama, gpus=1, **common), uploads=None)
    ddp_seen, single_seen = follow(backend, ddp), follow(backend, single)
    assert ddp_seen["last"].status == "succeeded", ddp_seen["last"].error
    assert any("x 2 processes (DDP)" in e.message for e in ddp_seen["events"])
    ddp_losses = [m["train_loss"] for m in ddp_seen["metrics"]]
    assert ddp_losses == pytest.approx([m["train_loss"] for m in single_seen["metrics"]], rel=1e-4)
    assert ddp_seen["last"].result_model == "local:run-tiny"


def test_speed_levers_do_not_change_the_losses(tmp_path, tiny_llama):  # noqa: F811
    """Padded batches, gradient accumulation and checkpointing train exactly like packed rows."""
    backend = LocalBackend()
    # One step per epoch holds every example, so length grouping cannot change a step's batch.
    common = dict(n_epochs=3, batch_size=12, lora_dropout="0")
    levers = backend.start(tiny_spec(tmp_path / "levers", tiny_llama, packing="false", gradient_checkpointing="true",
                                     gradient_accumulation_steps=2, **common), uploads=None)
    plain = backend.start(tiny_spec(tmp_path / "plain", tiny_llama, **common), uploads=None)
    levers_seen, plain_seen = follow(backend, levers), follow(backend, plain)
    assert levers_seen["last"].status == "succeeded", levers_seen["last"].error
    assert [m["train_loss"] for m in levers_seen["metrics"]] == pytest.approx(
        [m["train_loss"] for m in plain_seen["metrics"]], rel=1e-4)
