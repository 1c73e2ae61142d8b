"""The model pool on the real default model, SmolLM2-135M-Instruct: greedy answers are plain
transformers `generate`'s, token for token, alone and in a batch mixing the base and an adapter.

Slow (about a minute of CPU): the GGUF is converted once for the module.
"""

from __future__ import annotations

import pytest

from fixtures_local import write_jsonl  # noqa: F401  (sets passive OpenMP before torch loads)
from test_local_smollm2 import home  # noqa: F401  (fixture: this module's FTM_HOME, skipped without SmolLM2)

pytest.importorskip("gguf")
torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
peft = pytest.importorskip("peft")

from ftm_backends.local.modeling import loading as models  # noqa: E402
from ftm_backends.local.modeling.loading import Target  # noqa: E402
from ftm_backends.local.engine.pool import Ask, Pool  # noqa: E402

pytestmark = pytest.mark.slow
QUESTIONS = [[{"role": "system", "content": "Answer in JSON."}, {"role": "user", "content": f"What is the capital of {c}?"}]
             for c in ("Peru", "Kenya")]
N = 24


@pytest.fixture(scope="module")
def smollm2(home):  # noqa: F811
    """SmolLM2 as safetensors, and a LoRA adapter on it (random weights, all linear layers)."""
    base = str(models.ensure_smollm2())
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_pretrained(base)
    config = peft.LoraConfig(r=16, lora_alpha=64, target_modules="all-linear", init_lora_weights=False)
    peft.get_peft_model(model, config).save_pretrained(home / "adapter")
    return Target(base), Target(base, str(home / "adapter"))


def generate(model, tok, messages: list[dict]) -> tuple[str, int]:
    """Plain transformers: generate() greedy, and the tokens it made before the end of turn."""
    ids = tok.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    with torch.no_grad():
        out = model.generate(**ids, max_new_tokens=N, do_sample=False)[0, ids["input_ids"].shape[1]:].tolist()
    made = [t for t in out if t not in (tok.eos_token_id, model.generation_config.eos_token_id)]
    return tok.decode(made, skip_special_tokens=True), len(made)


def test_smollm2_answers_as_plain_generate_alone_and_in_a_mixed_batch(smollm2):
    base, tuned = smollm2
    asks = [Ask(base, QUESTIONS[0], max_tokens=N), Ask(tuned, QUESTIONS[0], max_tokens=N),
            Ask(tuned, QUESTIONS[1], max_tokens=N)]
    pool = Pool(device="cpu")
    try:
        alone = [pool.answers([ask])[0] for ask in asks]
        together = pool.answers(asks)
    finally:
        pool.close()
    tok = transformers.AutoTokenizer.from_pretrained(base.base)
    model = transformers.AutoModelForCausalLM.from_pretrained(base.base).eval()
    expected = [generate(model, tok, QUESTIONS[0])]
    model = peft.PeftModel.from_pretrained(model, tuned.adapter).eval()
    expected += [generate(model, tok, q) for q in QUESTIONS]
    assert [(d.text, d.completion_tokens) for d in alone] == expected
    assert [(d.text, d.completion_tokens) for d in together] == expected
    assert expected[0] != expected[1]  # the adapter changes the answer
