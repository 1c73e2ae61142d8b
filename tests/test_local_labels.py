"""ftm's training labels agree token for token with Hugging Face's assistant-token masks.

The peer: `apply_chat_template(..., return_assistant_tokens_mask=True)` with a copy of
SmolLM2-135M-Instruct's chat template (Apache-2.0) whose assistant turns are wrapped in
`{% generation %}` tags, as TRL's training templates do. The tagged turn is what ftm trains:
the reply, its tool calls (as JSON: SmolLM2's template has no tool support) and the
end-of-turn marker with its newline; a weight-0 reply is left untagged.
"""

from __future__ import annotations

import pytest

from fixtures_local import smollm2_tokenizer  # noqa: F401  (fixture)

pytest.importorskip("gguf")

from ftm_backends.local.modeling.encoding import IGNORE, encode  # noqa: E402

TAGGED_SMOLLM2 = (
    "{% for message in messages %}"
    "{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\\n' }}"
    "{% endif %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' }}"
    "{% set content = message['content'] or '' %}"
    "{% if message['tool_calls'] %}"
    "{% set content = content + ('\\n' if content else '') + (message['tool_calls'] | tojson(ensure_ascii=True)) %}"
    "{% endif %}"
    "{% if message['role'] == 'assistant' and message.get('weight', 1) != 0 %}"
    "{% generation %}{{ content + '<|im_end|>' + '\\n' }}{% endgeneration %}"
    "{% else %}{{ content + '<|im_end|>' + '\\n' }}{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


def user(text):
    return {"role": "user", "content": text}


def bot(text, **extra):
    return {"role": "assistant", "content": text, **extra}


CALL = {"id": "call_1", "type": "function", "function": {"name": "capital", "arguments": '{"country": "Peru"}'}}
TOOLS = [{"type": "function", "function": {"name": "capital", "parameters": {"type": "object"}}}]
CONVERSATIONS = {
    "plain": [user("Capital of France?"), bot("Paris.")],
    "system": [{"role": "system", "content": "Answer in one word."}, user("Capital of Peru?"), bot("Lima")],
    "multi-turn": [user("Hi"), bot("Hello! How can I help?"), user("2+2?"), bot("4"), user("Sure?"), bot("Yes, 4.")],
    "assistant first": [bot("Welcome! Ask me about capitals."), user("Chile?"), bot("Santiago")],
    "assistant only": [bot("Just a greeting.")],
    "system then assistant": [{"role": "system", "content": "Be warm."}, bot("Hi there!"), user("Hi"), bot("How are you?")],
    "weight 0": [user("2+2?"), bot("5", weight=0), user("Really?"), bot("Sorry: 4.", weight=1)],
    "weight 0 first": [bot("(old greeting)", weight=0), user("Go"), bot("Going.")],
    "tool call": [user("Capital of Peru?"), bot(None, tool_calls=[CALL]),
                  {"role": "tool", "tool_call_id": "call_1", "content": "Lima"}, bot("It is Lima.")],
    "tool call with text": [user("Peru?"), bot("Let me look.", tool_calls=[CALL]),
                            {"role": "tool", "tool_call_id": "call_1", "content": "Lima"}, bot("Lima.")],
    "unicode": [user("¿Dónde está Zürich? 東京は？"), bot("Zürich liegt in der Schweiz 🇨🇭; 東京は日本です。 naïve café")],
    "rtl and combining": [user("مرحبا"), bot("مرحبا بك — e\u0301 ǅ 𝔘𝔫𝔦𝔠𝔬𝔡𝔢")],
    "whitespace": [user("  spaced  "), bot("\n  indented\n\nlines  \n")],
    "markup": [user("Bold?"), bot("<b>bold</b> and <|not special|>")],
    "empty reply": [user("Say nothing."), bot("")],
}


def hf_mask(tok, messages, tools):
    kwargs = {"tools": tools} if tools else {}
    out = tok.apply_chat_template(messages, chat_template=TAGGED_SMOLLM2, tokenize=True, return_dict=True,
                                  return_assistant_tokens_mask=True, **kwargs)
    text = tok.apply_chat_template(messages, chat_template=TAGGED_SMOLLM2, tokenize=False, **kwargs)
    return text, list(out["input_ids"]), list(out["assistant_masks"])


@pytest.mark.parametrize("name", list(CONVERSATIONS))
def test_labels_match_huggingface_assistant_masks(smollm2_tokenizer, name):  # noqa: F811
    tok, messages = smollm2_tokenizer, CONVERSATIONS[name]
    tools = TOOLS if "tool" in name else None
    example = {"messages": messages, **({"tools": tools} if tools else {})}
    text, ids, mask = hf_mask(tok, messages, tools)
    ours = encode(tok, example, max_length=10 ** 6)
    assert tok.decode(ours.input_ids) == text, "both render the same conversation"
    assert ours.input_ids == ids
    assert [label != IGNORE for label in ours.labels] == [bool(m) for m in mask]
    assert all(label in (IGNORE, tid) for label, tid in zip(ours.labels, ours.input_ids))


def test_an_assistant_first_conversation_does_not_train_the_default_system_prompt(smollm2_tokenizer):  # noqa: F811
    enc = encode(smollm2_tokenizer, {"messages": CONVERSATIONS["assistant first"]}, max_length=10 ** 6)
    trained = smollm2_tokenizer.decode([t for t, label in zip(enc.input_ids, enc.labels) if label != IGNORE])
    assert trained == "Welcome! Ask me about capitals.<|im_end|>\nSantiago<|im_end|>\n"
