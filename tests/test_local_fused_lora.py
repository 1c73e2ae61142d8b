"""The trainer's lean paths compute what the libraries' own do: its LoRA forward gives peft's loss
and gradients (and a real, seeded dropout in training), and its attention over each example of a
packed row gives sdpa's block-masked result."""

from __future__ import annotations

import pytest

from fixtures_local import tiny_llama  # noqa: F401  (fixture)

torch = pytest.importorskip("torch")
pytest.importorskip("peft")

from ftm_backends.local.modeling import loading as models  # noqa: E402
from ftm_backends.local.modeling.encoding import encode  # noqa: E402
from ftm_backends.local.trainer import batching  # noqa: E402
from ftm_backends.local.trainer.options import resolve_options  # noqa: E402
from ftm_backends.local.trainer.kernels import PACKED  # noqa: E402
from ftm_backends.local.trainer.train import TokenLoss, fuse_lora  # noqa: E402

EXAMPLES = [
    {"messages": [{"role": "user", "content": "Capital of France?"}, {"role": "assistant", "content": "Paris"}]},
    {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello there, friend."}]},
]


def lora_model(path, dropout: float):
    opts = resolve_options({"quantize": "false", "lora_dropout": str(dropout), "device": "cpu"})
    model = models.with_lora(models.load_base(str(path), "cpu", False), opts, 0)
    torch.manual_seed(1)
    for name, p in model.named_parameters():
        if "lora_B" in name:  # peft starts B at zero, which would hide any error in B's path
            torch.nn.init.normal_(p, std=0.5)
    return model


def loss_and_grads(loss_fn, batch) -> tuple[float, dict]:
    loss, _, _ = loss_fn(**batch)
    loss.backward()
    grads = {n: p.grad.clone() for n, p in loss_fn.named_parameters() if p.requires_grad}
    return loss.item(), grads


@pytest.fixture(scope="module")
def batch(tiny_llama):  # noqa: F811
    tok = models.load_tokenizer(str(tiny_llama))
    return batching.collator(True, tok.pad_token_id, "cpu")([encode(tok, e, 200) for e in EXAMPLES])


def test_fused_forward_gives_peft_loss_and_gradients(tiny_llama, batch, monkeypatch):  # noqa: F811
    ours = TokenLoss(lora_model(tiny_llama, 0.0)).train()
    monkeypatch.setattr("ftm_backends.local.trainer.train.fuse_lora", lambda model: 0)
    theirs = TokenLoss(lora_model(tiny_llama, 0.0)).train()
    loss_a, grads_a = loss_and_grads(ours, batch)
    loss_b, grads_b = loss_and_grads(theirs, batch)
    assert loss_a == pytest.approx(loss_b, rel=1e-5)
    assert grads_a.keys() == grads_b.keys() and any("lora_A" in n for n in grads_a)
    for name in grads_a:
        torch.testing.assert_close(grads_a[name], grads_b[name], rtol=1e-4, atol=1e-6)


def test_every_plain_lora_layer_is_fused_and_dropout_acts_in_training_only(tiny_llama, batch):  # noqa: F811
    model = lora_model(tiny_llama, 0.5)
    assert fuse_lora(model) == 2 * 7  # two layers, all seven linear layers each
    loss_fn = TokenLoss(model)
    with torch.no_grad():
        evals = {loss_fn.eval()(**batch)[0].item() for _ in range(2)}
        torch.manual_seed(0)
        first = loss_fn.train()(**batch)[0].item()
        torch.manual_seed(0)
        again = loss_fn(**batch)[0].item()
        other = loss_fn(**batch)[0].item()
    assert len(evals) == 1  # no dropout in eval mode
    assert first == again != other and first not in evals  # seeded masks, a new one each time


def test_packed_rows_attend_per_example_with_sdpas_result(tiny_llama, batch, monkeypatch):  # noqa: F811
    from transformers import AutoModelForCausalLM

    ours = TokenLoss(AutoModelForCausalLM.from_pretrained(tiny_llama))
    monkeypatch.setattr("ftm_backends.local.trainer.train.attend_per_example", lambda model: False)
    theirs = TokenLoss(AutoModelForCausalLM.from_pretrained(tiny_llama))
    assert ours.model.config._attn_implementation == PACKED
    assert theirs.model.config._attn_implementation == "sdpa"
    loss_a, grads_a = loss_and_grads(ours, batch)
    loss_b, grads_b = loss_and_grads(theirs, batch)
    assert loss_a == pytest.approx(loss_b, rel=1e-5)
    for name in grads_a:
        torch.testing.assert_close(grads_a[name], grads_b[name], rtol=1e-3, atol=1e-5)
