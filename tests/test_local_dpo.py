"""The local DPO loss: the same loss, gradients and reward figures as TRL's DPOTrainer on the same
model, batch and masks (LoRA with the adapter switched off as reference, and full fine-tuning with
a frozen copy), and a few steps of it raise the chosen-over-rejected margin."""

from __future__ import annotations

import copy
import importlib.util

import pytest

from fixtures_local import tiny_llama, wide_tiny_llama  # noqa: F401  (fixtures)

torch = pytest.importorskip("torch")

from ftm_backends.local.trainer import dpo  # noqa: E402
from ftmanager.errors import InvalidInput  # noqa: E402

HAS_TRL = importlib.util.find_spec("trl") is not None
needs_trl = pytest.mark.skipif(not HAS_TRL, reason="TRL is not installed (pip install -e '.[dev]' brings it): "
                               "the loss is checked against TRL's DPOTrainer only where TRL is importable")


def pair(question: str, good: str, bad: str, system: str | None = None) -> dict:
    prompt = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": question}]
    return {"input": {"messages": prompt}, "preferred_output": [{"role": "assistant", "content": good}],
            "non_preferred_output": [{"role": "assistant", "content": bad}]}


PAIRS = [
    pair("What is 2 plus 2?", "4", "5, I think"),
    pair("Name a colour.", "Blue.", "Seven", system="Be brief."),
    # an earlier assistant turn in the prompt is context, never scored
    {"input": {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"},
                            {"role": "user", "content": "Bye?"}]},
     "preferred_output": [{"role": "assistant", "content": "Goodbye!"}],
     "non_preferred_output": [{"role": "assistant", "content": "No."}]},
]


def load(path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32), AutoTokenizer.from_pretrained(path)


LORA = dict(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=["q_proj", "v_proj"])


def lora(model):
    """The model with a LoRA adapter moved away from zero, so it differs from its reference."""
    from peft import LoraConfig, get_peft_model

    return moved(get_peft_model(model, LoraConfig(**LORA)))


def moved(model):
    """Give a LoRA adapter's B matrices (zero when new) random values, in place."""
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=generator) * 0.5)
    return model


def nudged(model):
    """A full-fine-tuning policy: the model with its weights moved, and a frozen copy as reference."""
    reference = dpo.frozen_copy(model)
    generator = torch.Generator().manual_seed(4)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=generator) * 0.05)
    return model, reference


def batch_of(tok):
    return dpo.collate([dpo.encode_pair(tok, example, 256) for example in PAIRS], tok.pad_token_id)


def trl_inputs(tok) -> dict:
    """The same batch in TRL's layout: ids, attention mask and its completion mask (our labels)."""
    pairs = [dpo.encode_pair(tok, example, 256) for example in PAIRS]
    rows = [p.chosen for p in pairs] + [p.rejected for p in pairs]
    width = max(len(r.input_ids) for r in rows)
    ids = torch.full((len(rows), width), tok.pad_token_id)
    attention = torch.zeros((len(rows), width), dtype=torch.long)
    completion = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        n = len(r.input_ids)
        ids[i, :n] = torch.tensor(r.input_ids)
        attention[i, :n] = 1
        completion[i, :n] = torch.tensor([label != -100 for label in r.labels], dtype=torch.long)
    return {"input_ids": ids, "attention_mask": attention, "completion_mask": completion}


def ours(model, tok, settings, reference=None):
    model.zero_grad()
    value, figures = dpo.loss(model, batch_of(tok), settings, reference=reference)
    value.backward()
    return value.item(), figures, grads(model)


def trainer(model, tok, settings, reference, tmp_path, peft_config=None):
    """TRL's DPOTrainer at these settings in float32 (its rows are only there to build it)."""
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    args = DPOConfig(output_dir=str(tmp_path / "trl"), beta=settings.beta, **trl_loss(settings),
                     label_smoothing=settings.label_smoothing, bf16=False, fp16=False, use_cpu=True,
                     gradient_checkpointing=False, report_to=[], max_length=None)
    rows = Dataset.from_list([{"prompt": e["input"]["messages"], "chosen": e["preferred_output"],
                               "rejected": e["non_preferred_output"]} for e in PAIRS])
    return DPOTrainer(model=model, ref_model=reference, args=args, train_dataset=rows, processing_class=tok,
                      peft_config=peft_config)


def trl_loss(settings) -> dict:
    """TRL's loss_type (and weights) for ours. TRL 1.x dropped label smoothing from its sigmoid
    loss (cDPO); with S its sigmoid and R its robust loss at the same ε, cDPO = 2(1-ε)S - (1-2ε)R."""
    eps = settings.label_smoothing
    if settings.loss == "sigmoid" and eps:
        return {"loss_type": ["sigmoid", "robust"], "loss_weights": [2 * (1 - eps), -(1 - 2 * eps)]}
    return {"loss_type": [settings.loss]}


def trls(trl_trainer, tok):
    model = trl_trainer.model
    model.zero_grad()
    value = trl_trainer.compute_loss(model, trl_inputs(tok))
    value.backward()
    figures = {k: v[-1] for k, v in trl_trainer._metrics["train"].items()}
    return value.item(), figures, grads(model)


def grads(model) -> dict:
    return {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.requires_grad and p.grad is not None}


SETTINGS = [dpo.Settings(beta=0.1), dpo.Settings(beta=0.3, label_smoothing=0.2),
            dpo.Settings(beta=0.5, loss="robust", label_smoothing=0.1), dpo.Settings(beta=0.2, loss="ipo")]


@needs_trl
@pytest.mark.parametrize("settings", SETTINGS, ids=lambda s: s.loss + ("-cdpo" if s.loss == "sigmoid" and s.label_smoothing else ""))
@pytest.mark.parametrize("method", ["lora", "full"])
def test_loss_gradients_and_rewards_equal_trls_dpo_trainer(tiny_llama, tmp_path, settings, method):  # noqa: F811
    from peft import LoraConfig

    base, tok = load(tiny_llama)
    if method == "lora":
        # TRL adds a new adapter itself and then, as ftm, takes the base with it switched off
        # as reference (an adapter handed to it ready-made would be copied as the reference)
        trl_trainer = trainer(base, tok, settings, None, tmp_path, peft_config=LoraConfig(**LORA))
        model, reference = moved(trl_trainer.model), None
    else:
        model, reference = nudged(base)
        trl_trainer = trainer(model, tok, settings, reference, tmp_path)
    model.train()
    mine, my_figures, my_grads = ours(model, tok, settings, reference)
    theirs, their_figures, their_grads = trls(trl_trainer, tok)
    assert mine == pytest.approx(theirs, abs=1e-5)
    assert my_figures["train_loss"] == pytest.approx(mine)
    for name in ("rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies",
                 "logps/chosen", "logps/rejected"):
        assert my_figures[name] == pytest.approx(their_figures[name], abs=1e-5), name
    assert my_grads.keys() == their_grads.keys() and my_grads
    for name, grad in my_grads.items():
        torch.testing.assert_close(grad, their_grads[name], atol=1e-5, rtol=1e-4, msg=name)
    assert abs(my_figures["rewards/margins"]) > 1e-3  # the policy is not its reference: a real test


def test_the_lora_reference_is_the_base_model_with_the_adapter_off(tiny_llama):  # noqa: F811
    base, tok = load(tiny_llama)
    plain = copy.deepcopy(base)
    model, batch = lora(base), batch_of(tok)
    with torch.no_grad():
        adapter_on, _ = dpo.answer_logps(model, batch)
        base_logps, _ = dpo.answer_logps(plain, batch)
    reference, counts = dpo.reference_logps(model, batch)
    torch.testing.assert_close(reference, base_logps)
    assert not torch.allclose(adapter_on, reference)  # and the adapter is back on afterwards
    torch.testing.assert_close(dpo.answer_logps(model, batch)[0].detach(), adapter_on)
    assert (counts > 0).all()


def test_only_the_answers_are_scored_with_sfts_labels(tiny_llama):  # noqa: F811
    _, tok = load(tiny_llama)
    encoded = dpo.encode_pair(tok, PAIRS[2], 256)
    for side, answer in ((encoded.chosen, "Goodbye!"), (encoded.rejected, "No.")):
        scored = tok.decode([t for t, label in zip(side.input_ids, side.labels) if label != -100])
        assert scored.startswith(answer) and "Hello" not in scored and "Bye?" not in scored


@pytest.mark.parametrize("method", ["lora", "full"])
def test_a_few_steps_raise_the_chosen_over_rejected_margin(tiny_llama, method):  # noqa: F811
    base, tok = load(tiny_llama)
    model, reference = (lora(base), None) if method == "lora" else nudged(base)
    trainable = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(trainable, lr=1e-2)
    batch, settings, margins = batch_of(tok), dpo.Settings(beta=0.1), []
    for _ in range(8):
        opt.zero_grad()
        value, figures = dpo.loss(model, batch, settings, reference=reference)
        value.backward()
        opt.step()
        margins.append(figures["rewards/margins"])
    _, after = dpo.loss(model, batch, settings, reference=reference)
    assert after["rewards/margins"] > margins[0] + 0.1, margins
    assert after["rewards/accuracies"] == 1.0
    assert after["train_loss"] < figures["train_loss"] or after["train_loss"] < 0.69


def test_qlora_keeps_one_4bit_copy_and_learns_the_preference(wide_tiny_llama):  # noqa: F811
    from transformers import AutoTokenizer

    from ftm_backends.local.modeling import loading as models

    tok = AutoTokenizer.from_pretrained(wide_tiny_llama)
    opts = {"quantize": True, "gradient_checkpointing": False, "lora_r": 4, "lora_alpha": 8, "lora_dropout": 0.0,
            "target_modules": ["q_proj", "v_proj"]}
    model = models.with_lora(models.load_base(str(wide_tiny_llama), "cpu", quantize=True), opts, seed=1)
    assert sum("Linear4bit" in type(m).__name__ for m in model.modules()) > 0
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2e-2)
    batch, settings = batch_of(tok), dpo.Settings(beta=0.1)
    model.train()
    _, start = dpo.loss(model, batch, settings)
    assert start["rewards/margins"] == pytest.approx(0, abs=1e-6)  # a new adapter is its reference
    for _ in range(6):
        opt.zero_grad()
        value, _ = dpo.loss(model, batch, settings)
        value.backward()
        opt.step()
    _, after = dpo.loss(model, batch, settings)
    assert after["rewards/margins"] > 0.05, after


@pytest.mark.parametrize("bad", [{"beta": 0}, {"beta": -1}, {"loss": "hinge"}, {"label_smoothing": 0.5},
                                 {"label_smoothing": -0.1}])
def test_settings_out_of_range_are_one_line_errors(bad):
    with pytest.raises(InvalidInput) as refused:
        dpo.Settings(**bad)
    assert "\n" not in str(refused.value)


def test_full_fine_tuning_without_a_reference_copy_is_refused(tiny_llama):  # noqa: F811
    base, tok = load(tiny_llama)
    with pytest.raises(ValueError, match="frozen reference"):
        dpo.loss(base, batch_of(tok), dpo.Settings())
