"""Packed rows are padding-free and isolate examples exactly like running each one alone."""

from __future__ import annotations

import pytest

from fixtures_local import tiny_llama  # noqa: F401  (fixture)

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from ftm_backends.local.trainer import batching  # noqa: E402
from ftm_backends.local.modeling.encoding import encode  # noqa: E402
from ftm_backends.local.trainer.train import TokenLoss  # noqa: E402

EXAMPLES = [
    {"messages": [{"role": "user", "content": "Capital of France?"}, {"role": "assistant", "content": "Paris"}]},
    {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello there, friend."}]},
    {"messages": [{"role": "user", "content": "2+2"}, {"role": "assistant", "content": "4"}]},
]


@pytest.fixture(scope="module")
def model_and_encoded(tiny_llama):  # noqa: F811
    tok = transformers.AutoTokenizer.from_pretrained(tiny_llama)
    model = transformers.AutoModelForCausalLM.from_pretrained(tiny_llama).eval()
    return model, [encode(tok, e, 1000) for e in EXAMPLES]


def test_packed_row_gives_each_example_its_own_logits(model_and_encoded):
    model, encs = model_and_encoded
    packed = batching.collate_packed(encs)
    with torch.no_grad():
        row = model(input_ids=packed["input_ids"], position_ids=packed["position_ids"], use_cache=False).logits[0]
        start = 0
        for enc in encs:
            alone = model(input_ids=torch.tensor([enc.input_ids]), use_cache=False).logits[0]
            assert torch.allclose(row[start:start + len(enc.input_ids)], alone, atol=1e-5)
            start += len(enc.input_ids)


def test_packed_and_padded_batches_give_the_same_loss(model_and_encoded):
    model, encs = model_and_encoded
    from peft import LoraConfig, get_peft_model

    loss_mod = TokenLoss(get_peft_model(model, LoraConfig(r=4, target_modules="all-linear"))).eval()
    with torch.no_grad():
        packed = loss_mod(**batching.collate_packed(encs))
        padded = loss_mod(**batching.collate_padded(encs, pad_id=1))
    assert packed[2] == padded[2] == sum(e.n_trained for e in encs)
    assert torch.allclose(packed[0], padded[0], atol=1e-4)
    assert batching.padding_fraction([batching.collate_packed(encs)]) == 0.0
    assert batching.padding_fraction([batching.collate_padded(encs, 1, length=200)]) > 0.5


def test_epoch_plan_is_seeded_and_covers_every_example():
    lengths = [5, 50, 7, 300, 40, 41, 6, 8, 90, 12]
    for grouped in (False, True):
        plan = batching.plan_epoch(lengths, 3, seed=1, epoch=0, grouped=grouped)
        assert sorted(i for step in plan for i in step) == list(range(10))
        assert plan == batching.plan_epoch(lengths, 3, seed=1, epoch=0, grouped=grouped)
    assert batching.plan_epoch(lengths, 3, 1, 0, False) != batching.plan_epoch(lengths, 3, 1, 1, False)


def test_steps_resumed_at_any_step_are_the_tail_of_the_whole_plan():
    lengths = [5, 50, 7, 300, 40, 41, 6, 8, 90, 12]
    whole = list(batching.steps(lengths, 3, seed=2, epochs=3, grouped=True))
    assert [s for s, _, _ in whole] == list(range(1, 13))
    assert [s for s, _, last in whole if last] == [4, 8, 12]
    for start in (0, 3, 4, 5, 11, 12):
        assert list(batching.steps(lengths, 3, seed=2, epochs=3, grouped=True, start=start)) == whole[start:]
