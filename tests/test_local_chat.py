"""Loss masking: only assistant tokens with weight 1 are trained, as a person would mark them."""

from __future__ import annotations

import pytest

from fixtures_local import tiny_llama  # noqa: F401  (fixture)

transformers = pytest.importorskip("transformers")

from ftm_backends.local.modeling.encoding import IGNORE, encode, encode_all  # noqa: E402


@pytest.fixture(scope="module")
def tok(tiny_llama):  # noqa: F811
    return transformers.AutoTokenizer.from_pretrained(tiny_llama)


def marked(tok, enc) -> str:
    """The trained text, with '|' where untrained text was skipped."""
    out, gap = [], False
    for tid, label in zip(enc.input_ids, enc.labels):
        if label == IGNORE:
            gap = True
            continue
        out.append(("|" if gap and out else "") + tok.convert_ids_to_tokens(tid))
        gap = False
    return "".join(out)


def test_multi_turn_mask_with_weights_is_what_a_person_marks(tok):
    example = {"messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!", "weight": 1},
        {"role": "user", "content": "2+2?"},
        {"role": "assistant", "content": "5", "weight": 0},
        {"role": "user", "content": "Sure?"},
        {"role": "assistant", "content": "4."},
    ]}
    enc = encode(tok, example, max_length=1000)
    # By hand: each trained assistant reply with its end-of-turn marker and newline; the
    # weight-0 reply, prompts, roles and the assistant header are not trained.
    assert marked(tok, enc) == "Hello!<|im_end|>\n|4.<|im_end|>\n"
    assert len(enc.input_ids) == len(enc.labels) and not enc.truncated


def test_tool_calls_are_trained_even_when_the_template_ignores_them(tok):
    call = {"id": "c1", "type": "function", "function": {"name": "add", "arguments": '{"a":1}'}}
    example = {"messages": [
        {"role": "user", "content": "add"},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "c1", "content": "1"},
        {"role": "assistant", "content": "one"},
    ], "tools": [{"type": "function", "function": {"name": "add", "parameters": {}}}]}
    text = marked(tok, encode(tok, example, max_length=1000))
    assert '"name": "add"' in text and text.endswith("|one<|im_end|>\n")


def test_truncation_is_counted_and_an_empty_example_dropped(tok):
    long_prompt = {"messages": [{"role": "user", "content": "x" * 200},
                                {"role": "assistant", "content": "ok"}]}
    short = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "a" * 50}]}
    kept, stats = encode_all(tok, [short, long_prompt], max_length=40)
    assert stats["truncated"] == 2 and stats["dropped"] == 1 and stats["dropped_lines"] == [2]
    assert len(kept) == 1 and len(kept[0].input_ids) == 40 and kept[0].n_trained > 0
