"""Overfitting visible and avoidable: keep=best makes the run's model the checkpoint with the lowest
validation loss, and early_stopping=N stops after N validation passes without a lower one."""

from __future__ import annotations

import pytest

from fixtures_local import chat, tiny_llama, tiny_spec  # noqa: F401  (fixture)
from test_local_backend import follow

pytest.importorskip("peft")

from ftm_backends.local import LocalBackend  # noqa: E402

# The validation answers contradict the training ones: the better the model learns its training
# set, the worse it does on these (what overfitting looks like, made quick).
TRAIN = [chat(f"Name {i}.", "aaaa") for i in range(8)]
VALID = [chat(f"Name {i}.", "bbbb") for i in range(4)]


def messages(seen) -> list[str]:
    return [e.message for e in seen["events"]]


def test_keep_best_makes_the_lowest_validation_loss_the_runs_model(tmp_path, tiny_llama):  # noqa: F811
    backend = LocalBackend()
    spec = tiny_spec(tmp_path, tiny_llama, TRAIN, validation=VALID, keep="best", eval_every=1,
                     n_epochs=4, batch_size=4, learning_rate="0.02")
    seen = follow(backend, backend.start(spec, uploads=None))
    last = seen["last"]
    assert last.status == "succeeded", last.error
    losses = {m["step"]: m["valid_loss"] for m in seen["metrics"]}
    assert sorted(losses) == list(range(1, 9))  # validated at every step (eval_every=1)
    best = min(losses, key=losses.get)
    kept = spec.run_dir / "checkpoints" / f"step-{best}" / "adapter"
    assert last.result_path == str(kept) and best in [c.step for c in seen["checkpoints"]]
    assert f"Kept the checkpoint of step {best} as the model: the lowest validation loss ({losses[best]:.4f})" \
        in messages(seen)
    # the kept weights are the best step's: their loss on the validation set is the one recorded there
    scored = backend.answer_logprobs(None, last.result_path, str(tiny_llama), [v["messages"] for v in VALID])
    assert -sum(lp for lp, _ in scored) / sum(n for _, n in scored) == pytest.approx(losses[best], rel=1e-4)
    assert not (spec.run_dir / "adapter").exists(), "the last step's weights are not the run's model"


@pytest.mark.parametrize("keep, model", [("last", "adapter"), ("best", "checkpoints/step-1/adapter")])
def test_early_stopping_stops_after_n_evaluations_without_a_lower_loss(tmp_path, tiny_llama, keep, model):  # noqa: F811
    """At learning rate 0 the validation loss never goes lower than the first one: the run stops
    at the third validation pass after it, whatever the machine."""
    from transformers import AutoTokenizer

    from ftm_backends.local.modeling.encoding import encode

    backend = LocalBackend()
    spec = tiny_spec(tmp_path, tiny_llama, TRAIN, validation=VALID, early_stopping=3, eval_every=1, keep=keep,
                     n_epochs=4, batch_size=4, learning_rate="0")
    seen = follow(backend, backend.start(spec, uploads=None))
    assert seen["last"].status == "succeeded", seen["last"].error
    assert [m["step"] for m in seen["metrics"]] == [1, 2, 3, 4] and seen["last"].total_steps == 8
    loss = seen["metrics"][0]["valid_loss"]
    assert (f"Early stopping at step 4: the validation loss has not gone below {loss:.4f} (step 1) "
            f"in 3 evaluations") in messages(seen)
    assert seen["last"].result_path == str(spec.run_dir / model)  # keep=last: the model of the step it stopped at
    tok = AutoTokenizer.from_pretrained(tiny_llama)
    assert seen["last"].trained_tokens == 2 * sum(len(encode(tok, row, 1024).input_ids) for row in TRAIN)  # 2 epochs
