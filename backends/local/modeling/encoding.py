"""Chat examples -> token ids and labels, with only assistant tokens trained.

Labels come from the model's own chat template, rendered turn by turn: the characters an
assistant turn adds to the rendering (its content, tool calls and end-of-turn marker) are
trained; everything else is masked with -100. This works for any template whose renderings
of successive prefixes extend one another, and falls back to the common prefix where a
template rewrites the generation prompt (as thinking-model templates do).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

from . import templates

IGNORE = -100


@dataclass
class Encoded:
    input_ids: list[int]
    labels: list[int]
    truncated: bool = False

    @property
    def n_trained(self) -> int:
        return sum(1 for label in self.labels if label != IGNORE)


def _prepare(messages: list[dict], template: str) -> list[dict]:
    """Messages the template can render: tool calls as JSON when it has no tool support."""
    out = []
    for msg in messages:
        msg = {k: v for k, v in msg.items() if k != "weight"}
        if msg.get("content") is None:
            msg["content"] = ""
        if msg.get("tool_calls") and "tool_calls" not in template:
            msg["content"] = (msg["content"] + "\n" if msg["content"] else "") + json.dumps(msg.pop("tool_calls"))
        out.append(msg)
    return out


def _render(tokenizer, messages, tools, generation_prompt=False, template: str = "chat") -> str:
    kwargs = {"tools": tools} if tools else {}
    return tokenizer.apply_chat_template(
        messages, tokenize=False, add_generation_prompt=generation_prompt,
        chat_template=templates.source(tokenizer, template), **kwargs
    )


def _common_prefix(a: str, b: str) -> int:
    return len(os.path.commonprefix([a, b]))


def _prompt_before(tokenizer, messages: list[dict], i: int, tools, template: str) -> str:
    """The rendering that comes before assistant message i: what the model is prompted with."""
    if i:
        return _render(tokenizer, messages[:i], tools, True, template)
    # The first message: templates add their default system prompt only once a message exists
    # (SmolLM2's does), so render it with a placeholder for its content and cut there.
    placeholder = _render(tokenizer, [{**messages[0], "content": _MARK}], tools, False, template)
    return placeholder[:placeholder.find(_MARK)] if _MARK in placeholder else ""


_MARK = "\ue000ftm-content\ue000"  # private-use characters: no template or data holds them


def trained_spans(tokenizer, example: dict, template: str = "chat") -> tuple[str, list[tuple[int, int]]]:
    """The full rendering and the character spans of assistant turns whose weight is 1."""
    raw = example["messages"]
    messages = _prepare(raw, templates.source(tokenizer, template) or tokenizer.chat_template)
    tools = example.get("tools")
    spans = []
    for i, msg in enumerate(raw):
        if msg.get("role") != "assistant" or msg.get("weight", 1) == 0:
            continue
        upto = _render(tokenizer, messages[: i + 1], tools, False, template)
        spans.append((_common_prefix(_prompt_before(tokenizer, messages, i, tools, template), upto), len(upto)))
    return _render(tokenizer, messages, tools, False, template), spans


def prompt_text(tokenizer, messages: list[dict], template: str = "chat") -> str:
    """The text a model trained in `template` continues with the next assistant turn of messages."""
    prepared = _prepare(messages, templates.source(tokenizer, template) or tokenizer.chat_template)
    return _render(tokenizer, prepared, None, True, template)


def encode(tokenizer, example: dict, max_length: int, template: str = "chat") -> Encoded:
    """Token ids and labels for one chat example (written in `template`), truncated to max_length tokens."""
    text, spans = trained_spans(tokenizer, example, template)
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids, labels = enc["input_ids"], []
    for tok, (start, end) in zip(ids, enc["offset_mapping"]):
        # a token that reaches into a trained span is trained, as HF's assistant masks do
        # (a BPE token can join the header's newline to a reply that starts with one)
        inside = any(start < b and max(end, start + 1) > a for a, b in spans)
        labels.append(tok if inside else IGNORE)
    truncated = len(ids) > max_length
    return Encoded(ids[:max_length], labels[:max_length], truncated)


def encode_all(tokenizer, examples: list[dict], max_length: int,
               template: str = "chat") -> tuple[list[Encoded], dict]:
    """Encode a dataset; counts of truncated and dropped (nothing left to train) examples."""
    kept, stats = [], {"examples": len(examples), "truncated": 0, "dropped": 0, "dropped_lines": []}
    for line, example in enumerate(examples, 1):
        enc = encode(tokenizer, example, max_length, template)
        stats["truncated"] += enc.truncated
        if enc.n_trained == 0:
            stats["dropped"] += 1
            stats["dropped_lines"].append(line)
            continue
        kept.append(enc)
    return kept, stats
