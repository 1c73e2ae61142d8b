"""Canonical examples written out for other tools. A target that cannot hold an example
(tool calls in Alpaca, a weight-0 turn in ShareGPT) refuses it by line: data is never dropped.

Lossless round trips (import -> export -> import gives the same sha256): openai always;
together, sharegpt and alpaca for the examples they accept (alpaca: single-turn ones), as long
as no message carries an explicit "weight": 1 (they drop it: it means the same as no weight);
trl except tool calls, whose argument strings come back re-serialised compactly.
"""

from __future__ import annotations

from typing import TextIO

import orjson

from ..errors import InvalidInput
from .formats import SIDES


class CannotHold(ValueError):
    """This example does not fit the target format; the message says why."""


def _plain(messages: list, target: str, roles=("system", "user", "assistant")) -> None:
    """Refuse what text-only chat targets cannot hold."""
    for i, m in enumerate(messages, 1):
        if m.get("role") not in roles:
            raise CannotHold(f"message {i} has role {m.get('role')!r}, which {target} cannot hold")
        if not isinstance(m.get("content"), str):
            raise CannotHold(f"message {i} has non-text content, which {target} cannot hold")
        extra = m.keys() - {"role", "content", "weight"}
        if extra:
            raise CannotHold(f"message {i} has {', '.join(sorted(extra))}, which {target} cannot hold")


def _drop_weight(messages: list, target: str) -> list:
    out = []
    for i, m in enumerate(messages, 1):
        if m.get("weight", 1) == 0:
            raise CannotHold(f"message {i} has weight 0 (not trained), which {target} cannot express")
        out.append({k: v for k, v in m.items() if k != "weight"})
    return out


def to_together(example: dict) -> dict:
    """Together's conversational format, by the rules of the file check its SDK shipped
    (together <= 2.0.0): roles system/user/assistant, never two turns in a row from one role,
    per-message weight 0/1 kept; a conversation may start with any role."""
    if "tools" in example:
        raise CannotHold("it has tools, which together's conversational format cannot hold")
    messages = example["messages"]
    _plain(messages, "together")
    for i in range(1, len(messages)):
        if messages[i]["role"] == messages[i - 1]["role"]:
            raise CannotHold(f"messages {i} and {i + 1} are both {messages[i]['role']!r}: together needs the roles to alternate")
    return {"messages": messages}


def to_alpaca(example: dict) -> dict:
    """Alpaca: one instruction and one output (and a system prompt, as LLaMA-Factory reads it)."""
    if "tools" in example:
        raise CannotHold("it has tools, which alpaca cannot hold")
    messages = example["messages"]
    _plain(messages, "alpaca")
    messages = _drop_weight(messages, "alpaca")
    system = messages[0]["content"] if messages and messages[0]["role"] == "system" else None
    turns = messages[1:] if system is not None else messages
    if [m["role"] for m in turns] != ["user", "assistant"]:
        raise CannotHold("alpaca holds one user message and one assistant reply; this example has more")
    out = {"instruction": turns[0]["content"], "input": "", "output": turns[1]["content"]}
    if system is not None:
        out["system"] = system
    return out


def to_sharegpt(example: dict) -> dict:
    """ShareGPT: conversations of {from: system|human|gpt, value}."""
    if "tools" in example:
        raise CannotHold("it has tools, which sharegpt's plain conversations cannot hold")
    _plain(example["messages"], "sharegpt")
    names = {"system": "system", "user": "human", "assistant": "gpt"}
    turns = _drop_weight(example["messages"], "sharegpt")
    return {"conversations": [{"from": names[m["role"]], "value": m["content"]} for m in turns]}


def to_trl(example: dict) -> dict:
    """TRL's conversational "messages" (tool call arguments as objects, as chat templates want)."""
    messages = []
    for i, m in enumerate(_drop_weight(example["messages"], "trl"), 1):
        if isinstance(m.get("content"), list) and any(p.get("type") != "text" for p in m["content"]):
            raise CannotHold(f"message {i} has an image part, which ftm's trl export does not convert")
        if m.get("tool_calls"):
            m = {**m, "tool_calls": [_object_arguments(call) for call in m["tool_calls"]]}
        messages.append(m)
    out = {"messages": messages}
    if "tools" in example:
        out["tools"] = example["tools"]
    return out


def _object_arguments(call: dict) -> dict:
    fn = call["function"]
    return {**call, "function": {**fn, "arguments": orjson.loads(fn["arguments"])}}


_WRITERS = {
    "openai": lambda example: example,
    "together": to_together,
    "alpaca": to_alpaca,
    "trl": to_trl,
    "sharegpt": to_sharegpt,
}


def export(canonical_path, to: str, out: TextIO, kind: str = "chat") -> int:
    """Write a canonical dataset of `kind` (chat or preference) as JSONL for `to`; returns the
    number of examples written.

    Every example is checked before anything is written, so a refusal writes nothing.
    """
    from .source import read

    writers, fmt = (PREFERENCE_WRITERS, "openai-preference") if kind == "preference" else (_WRITERS, "openai")
    if to not in writers:
        what = "a preference dataset " if kind == "preference" else ""
        raise InvalidInput(f"unknown export format {to!r} for {what}".rstrip(), f"Use one of: {', '.join(writers)}.")
    write = writers[to]
    refused = list(_refusals(read(canonical_path, fmt), write))
    if refused:
        more = f" (and {len(refused) - 1} more)" if len(refused) > 1 else ""
        raise InvalidInput(
            f"{len(refused)} example(s) cannot be written as {to}: line {refused[0][0]}: {refused[0][1]}{more}",
            "Export to openai or trl, which hold every example, or remove those examples.",
        )
    n = 0
    for n, example in enumerate((ex for _, ex in read(canonical_path, fmt)), 1):
        out.write(jsonl_line(write(example)))
    return n


# Characters that JSON leaves raw but that some readers split lines on (JavaScript's line
# terminators; Python's str.splitlines also splits on NEL).
_LINE_BREAKERS = str.maketrans({"\u2028": "\\u2028", "\u2029": "\\u2029", "\x85": "\\u0085"})


def jsonl_line(record: dict) -> str:
    """One JSONL line that every reader splits where we mean it to: the line breakers escaped."""
    return orjson.dumps(record).decode().translate(_LINE_BREAKERS) + "\n"


def _refusals(examples, write):
    """(line, why) for each example the target cannot hold (a first pass: memory stays flat)."""
    for n, example in examples:
        try:
            write(example)
        except CannotHold as why:
            yield n, str(why)


# --- preference pairs --------------------------------------------------------------------------------


def preference_to_together(example: dict) -> dict:
    """Together's preference rows (its DatasetFormat.PREFERENCE_OPENAI): OpenAI's shape, no
    other columns (so no tools), its conversational roles, text answers."""
    if "tools" in example["input"]:
        raise CannotHold("it has tools, which together's preference format cannot hold")
    for m in example["input"]["messages"]:
        if isinstance(m, dict) and m.get("role") not in ("system", "user", "assistant", "tool"):
            raise CannotHold(f"input has role {m.get('role')!r}, which together does not take")
    for side in SIDES:
        _plain(example[side], f"together's {side}")
    return {"input": {"messages": example["input"]["messages"]}, **{side: example[side] for side in SIDES}}


def preference_to_fireworks(example: dict) -> dict:
    """Fireworks' DPO rows, as its DPO docs give them: OpenAI's shape, the input's messages of roles
    system, user and assistant in text (its tools list kept, as the docs' example has one; no tool
    turns or calls), each answer one assistant message of text."""
    _plain(example["input"]["messages"], "fireworks' DPO input")
    for side in SIDES:
        _plain(example[side], f"fireworks' {side}")
    return {"input": {"messages": example["input"]["messages"], **_tools(example)},
            **{side: example[side] for side in SIDES}}


def preference_to_trl(example: dict) -> dict:
    """TRL's conversational preference row with an explicit prompt (tool arguments as objects)."""
    prompt = to_trl({"messages": example["input"]["messages"], **_tools(example)})
    out = {"prompt": prompt["messages"], "chosen": to_trl({"messages": example["preferred_output"]})["messages"],
           "rejected": to_trl({"messages": example["non_preferred_output"]})["messages"]}
    if "tools" in prompt:
        out["tools"] = prompt["tools"]
    return out


def _tools(example: dict) -> dict:
    return {"tools": example["input"]["tools"]} if "tools" in example["input"] else {}


PREFERENCE_WRITERS = {
    "openai": lambda example: example,
    "together": preference_to_together,
    "fireworks": preference_to_fireworks,
    "trl": preference_to_trl,
}
