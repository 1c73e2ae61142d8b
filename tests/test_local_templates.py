"""Base models without a chat template (GPT-2 style) train and answer in a prompt format:
alpaca or plain, the reply and its end-of-sequence token trained, prompted the way they trained."""

from __future__ import annotations

import pytest

from fixtures_local import chat, smollm2_tokenizer, tiny_gpt2, tiny_spec  # noqa: F401  (fixture)
from test_local_backend import follow

transformers = pytest.importorskip("transformers")

from ftm_backends.local import LocalBackend  # noqa: E402
from ftm_backends.local.modeling import loading as models  # noqa: E402
from ftm_backends.local.modeling.encoding import IGNORE, encode, prompt_text  # noqa: E402

EOS = "<|endoftext|>"
ALPACA_INPUT = ("Below is an instruction that describes a task, paired with an input that provides further "
                "context. Write a response that appropriately completes the request.\n\n")
ALPACA = "Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n"
TWO_TURNS = {"messages": [{"role": "system", "content": "Be terse."}, {"role": "user", "content": "Hi"},
                          {"role": "assistant", "content": "Hello"}, {"role": "user", "content": "2+2"},
                          {"role": "assistant", "content": "4"}]}
# Each format written out by hand: (text, trained?) pieces of TWO_TURNS, and of one plain question.
WRITTEN = {
    "alpaca": [(ALPACA_INPUT + "### Instruction:\nBe terse.\n\n### Input:\nHi\n\n### Response:\n", False),
               ("Hello" + EOS, True), ("\n\n### Input:\n2+2\n\n### Response:\n", False), ("4" + EOS, True)],
    "plain": [("Be terse.\nHi\n\n###\n", False), ("Hello" + EOS, True), ("2+2\n\n###\n", False), ("4" + EOS, True)],
}
ONE_TURN = {"alpaca": ALPACA + "### Instruction:\nred?\n\n### Response:\n", "plain": "red?\n\n###\n"}
STYLE = [("red?", "ROJO."), ("blue?", "AZUL."), ("green?", "VERDE."), ("black?", "NEGRO.")]


@pytest.fixture(scope="module")
def gpt2_tok(tiny_gpt2):  # noqa: F811
    return models.load_tokenizer(str(tiny_gpt2))


def ids_of(tok, text: str) -> list[int]:
    """Token ids of text, the end-of-sequence marker as its one token (the tiny tokenizer is per character)."""
    head, sep, tail = text.partition(EOS)
    ids = tok(head, add_special_tokens=False)["input_ids"]
    return ids + ([tok.eos_token_id] + ids_of(tok, tail) if sep else [])


@pytest.mark.parametrize("template", ["alpaca", "plain"])
def test_only_each_reply_and_its_end_of_sequence_token_are_trained(gpt2_tok, template):
    enc = encode(gpt2_tok, TWO_TURNS, 10_000, template)
    ids = [i for text, _ in WRITTEN[template] for i in ids_of(gpt2_tok, text)]
    labels = [i if trained else IGNORE for text, trained in WRITTEN[template] for i in ids_of(gpt2_tok, text)]
    assert enc.input_ids == ids and enc.labels == labels  # token by token
    assert prompt_text(gpt2_tok, TWO_TURNS["messages"][:2], template) == WRITTEN[template][0][0]
    assert prompt_text(gpt2_tok, [{"role": "user", "content": "red?"}], template) == ONE_TURN[template]


def test_a_model_without_a_chat_template_is_prompted_in_alpaca_unless_told(gpt2_tok):
    assert prompt_text(gpt2_tok, [{"role": "user", "content": "red?"}]) == ONE_TURN["alpaca"]


@pytest.mark.parametrize("template", ["alpaca", "plain"])
def test_a_bpe_model_is_prompted_with_the_tokens_it_was_trained_on(smollm2_tokenizer, template):  # noqa: F811
    """With a byte-level BPE (SmolLM2's, GPT-2's kind), the prompt alone tokenizes as the prompt
    followed by its reply, so the reply's first trained token comes right after it."""
    for reply in ("Paris", " Paris", "42", "Yes.\nNo."):
        example = chat("What is the capital of France?", reply, system="Answer briefly.")
        enc = encode(smollm2_tokenizer, example, 10_000, template)
        prompt = smollm2_tokenizer(prompt_text(smollm2_tokenizer, example["messages"][:-1], template),
                                   add_special_tokens=False)["input_ids"]
        assert enc.input_ids[:len(prompt)] == prompt
        assert enc.labels[:len(prompt)] == [IGNORE] * len(prompt) and enc.labels[len(prompt)] != IGNORE
        assert enc.labels[-1] == smollm2_tokenizer.eos_token_id


def test_gpt2_learns_a_completion_style_it_did_not_have(tmp_path, tiny_gpt2):  # noqa: F811
    """Full fine-tuning of a tiny GPT-2 in the plain format, trained until every answer token is
    the model's first choice on the examples (validation = the training set, after the last
    step): its greedy answers are then the completions, ending where they end."""
    backend, questions = LocalBackend(), [[{"role": "user", "content": q}] for q, _ in STYLE]
    rows, answers = [chat(q, a) for q, a in STYLE], [a for _, a in STYLE]
    assert backend.generate(None, None, str(tiny_gpt2), questions, max_new_tokens=8) != answers
    model, accuracy, rounds = tiny_gpt2, 0.0, 0
    while accuracy < 1.0:  # each round trains on from the model the last one saved
        rounds += 1
        assert rounds <= 10, "the tiny GPT-2 never fit four examples"
        spec = tiny_spec(tmp_path, model, rows, run_id=f"run-{rounds}", validation=rows, training_type="full",
                         template="plain", n_epochs=30, batch_size=4)
        seen = follow(backend, backend.start(spec, uploads=None), timeout=300)
        assert seen["last"].status == "succeeded", seen["last"].error
        accuracy, model = seen["metrics"][-1]["valid_mean_token_accuracy"], seen["last"].result_path
    assert seen["last"].hyperparameters["template"] == "plain" and seen["last"].hyperparameters["training_type"] == "full"
    assert models.target(model, None) == models.Target(model, None, "plain")
    assert backend.generate(None, model, None, questions, max_new_tokens=8) == answers

    # scoring (ftm eval's perplexity) reads the answers in the format too: transformers' own loss
    # on the plain text written out by hand
    import torch

    tok, lm = transformers.AutoTokenizer.from_pretrained(model), transformers.AutoModelForCausalLM.from_pretrained(model)
    ids = ids_of(tok, ONE_TURN["plain"] + "ROJO." + EOS)
    labels = [IGNORE] * len(ids_of(tok, ONE_TURN["plain"])) + ids[-6:]
    with torch.no_grad():
        loss = lm(input_ids=torch.tensor([ids]), labels=torch.tensor([labels])).loss
    (logprob, n), = backend.answer_logprobs(None, model, None, [rows[0]["messages"]])
    assert n == 6 and -logprob / n == pytest.approx(float(loss), rel=1e-4)
    # the saved tokenizer's chat template writes the format: an exported model prompts itself the same way
    assert tok.apply_chat_template(questions[0], tokenize=False, add_generation_prompt=True) == ONE_TURN["plain"]


def test_the_format_is_picked_for_a_model_without_a_template_and_said(tmp_path, tiny_gpt2):  # noqa: F811
    backend = LocalBackend()
    rows = [chat(q, a) for q, a in STYLE]
    auto = follow(backend, backend.start(tiny_spec(tmp_path, tiny_gpt2, rows, run_id="run-auto", n_epochs=1,
                                                   lora_r=2), uploads=None))
    assert auto["last"].status == "succeeded", auto["last"].error
    assert any("has no chat template: prompts are written in the alpaca format" in e.message
               for e in auto["events"])
    adapter = auto["last"].result_path
    assert auto["last"].hyperparameters["template"] == "alpaca"
    assert models.target(adapter, str(tiny_gpt2)) == models.Target(str(tiny_gpt2), adapter, "alpaca")

    told = follow(backend, backend.start(tiny_spec(tmp_path, tiny_gpt2, rows, run_id="run-chat", n_epochs=1,
                                                   template="chat"), uploads=None))
    assert told["last"].status == "failed"
    assert "no chat template" in told["last"].error["message"] and "-p template=alpaca" in told["last"].error["message"]
