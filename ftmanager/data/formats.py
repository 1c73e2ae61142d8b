"""The dataset formats ftm reads and writes, and the conversions to and from canonical form.

Canonical form is OpenAI's chat fine-tuning format: {"messages": [...]} plus "tools" (and
"parallel_tool_calls") when present, with tool_calls, the tool role and per-message weight kept.
"""

from __future__ import annotations

import orjson

FORMATS = ("openai", "alpaca", "prompt-completion", "sharegpt", "openai-preference", "trl-preference")
EXPORTS = ("openai", "together", "alpaca", "trl", "sharegpt")
CANONICAL_KEYS = frozenset({"messages", "tools", "parallel_tool_calls"})

# ShareGPT speaker names seen in the wild -> OpenAI roles. Tool turns (function_call,
# observation) carry no call ids, so they are refused rather than guessed.
SHAREGPT_ROLES = {
    "system": "system",
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "chatgpt": "assistant",
    "bing": "assistant",
    "bard": "assistant",
}


class Unconvertible(ValueError):
    """One record that cannot be converted; args = (code, message)."""

    def __init__(self, code: str, message: str):
        super().__init__(code, message)
        self.code, self.message = code, message


def detect(obj) -> str | None:
    """The format one parsed record is in, or None when it matches none."""
    if not isinstance(obj, dict):
        return None
    if pair := _pair_format(obj):
        return pair
    if "messages" in obj:
        return "openai"
    if "conversations" in obj:
        return "sharegpt"
    if "instruction" in obj and "output" in obj:
        return "alpaca"
    if "prompt" in obj and "completion" in obj:
        return "prompt-completion"
    return None


def to_canonical(obj, fmt: str) -> dict:
    """One record of format `fmt` as a canonical example; raises Unconvertible."""
    if not isinstance(obj, dict):
        raise Unconvertible("not_an_object", f"expected a JSON object, got {_kind(obj)}")
    return _READERS[fmt](obj)


def _kind(value) -> str:
    return {dict: "an object", list: "an array", str: "a string", type(None): "null"}.get(
        type(value), type(value).__name__
    )


def _text(obj: dict, key: str, fmt: str, required: bool = True) -> str:
    value = obj.get(key)
    if value is None and not required:
        return ""
    if not isinstance(value, str):
        got = "missing" if key not in obj else _kind(value)
        raise Unconvertible("missing_field", f"{fmt} example needs a string {key!r} ({got})")
    return value


def _from_openai(obj: dict) -> dict:
    if obj.keys() <= CANONICAL_KEYS and not _has_dict_arguments(obj.get("messages")):
        return obj  # the common case: already canonical, no copy
    example = {k: v for k, v in obj.items() if k in CANONICAL_KEYS}
    if _has_dict_arguments(example.get("messages")):
        example["messages"] = [_string_arguments(m) for m in example["messages"]]
    return example


def _has_dict_arguments(messages) -> bool:
    """TRL-style tool calls carry arguments as an object; OpenAI wants a JSON string."""
    if not isinstance(messages, list):
        return False
    return any(
        isinstance(call, dict) and isinstance(call.get("function"), dict)
        and isinstance(call["function"].get("arguments"), dict)
        for m in messages if isinstance(m, dict) and isinstance(m.get("tool_calls"), list)
        for call in m["tool_calls"]
    )


def _string_arguments(message):
    if not isinstance(message, dict) or not isinstance(message.get("tool_calls"), list):
        return message
    calls = []
    for call in message["tool_calls"]:
        fn = call.get("function") if isinstance(call, dict) else None
        if isinstance(fn, dict) and isinstance(fn.get("arguments"), dict):
            fn = {**fn, "arguments": orjson.dumps(fn["arguments"]).decode()}
            call = {**call, "function": fn}
        calls.append(call)
    return {**message, "tool_calls": calls}


def _from_alpaca(obj: dict) -> dict:
    instruction = _text(obj, "instruction", "alpaca")
    extra = _text(obj, "input", "alpaca", required=False)
    output = _text(obj, "output", "alpaca")
    system = _text(obj, "system", "alpaca", required=False)
    messages = [{"role": "system", "content": system}] if system else []
    user = "\n\n".join(part for part in (instruction, extra) if part)
    messages += [{"role": "user", "content": user}, {"role": "assistant", "content": output}]
    return {"messages": messages}


def _from_prompt_completion(obj: dict) -> dict:
    prompt, completion = obj.get("prompt"), obj.get("completion")
    if isinstance(prompt, list) and isinstance(completion, list):
        return {"messages": prompt + completion}  # TRL's conversational prompt-completion
    prompt = _text(obj, "prompt", "prompt-completion")
    completion = _text(obj, "completion", "prompt-completion")
    return {"messages": [{"role": "user", "content": prompt}, {"role": "assistant", "content": completion}]}


def _from_sharegpt(obj: dict) -> dict:
    turns = obj.get("conversations")
    if not isinstance(turns, list):
        raise Unconvertible("missing_field", f"sharegpt example needs a list 'conversations' ({_kind(turns)})")
    system = _text(obj, "system", "sharegpt", required=False)
    messages = [{"role": "system", "content": system}] if system else []
    for n, turn in enumerate(turns, 1):
        messages.append(_sharegpt_turn(turn, n))
    return {"messages": messages}


def _sharegpt_turn(turn, n: int) -> dict:
    if not isinstance(turn, dict):
        raise Unconvertible("missing_field", f"conversations[{n}] is {_kind(turn)}, not an object")
    speaker = turn.get("from", turn.get("role"))
    value = turn.get("value", turn.get("content"))
    role = SHAREGPT_ROLES.get(speaker) if isinstance(speaker, str) else None
    if role is None:
        raise Unconvertible("unknown_speaker", f"conversations[{n}] has unsupported speaker {speaker!r}")
    message = {"role": role, "content": value}
    weight = turn.get("weight")
    if role == "assistant" and weight in (0, 1) and not isinstance(weight, bool):
        message["weight"] = int(weight)
    return message


_READERS = {
    "openai": _from_openai,
    "alpaca": _from_alpaca,
    "prompt-completion": _from_prompt_completion,
    "sharegpt": _from_sharegpt,
}
# preference.py adds its readers here when it loads (the data package loads it: see __init__)


# --- preference pairs (canonical: OpenAI's preference JSONL; ftmanager.data.preference checks them) ---

SIDES = ("preferred_output", "non_preferred_output")
TOP_KEYS = frozenset({"input", *SIDES})
INPUT_KEYS = frozenset({"messages", "tools", "parallel_tool_calls"})


def _pair_format(obj: dict) -> str | None:
    """The preference format of one record, or None when it is not a preference pair."""
    if "preferred_output" in obj or "non_preferred_output" in obj:
        return "openai-preference"
    if "chosen" in obj and "rejected" in obj:
        return "trl-preference"
    return None



def from_openai(obj: dict) -> dict:
    """OpenAI's (and Together's) preference row, with only the keys that carry meaning."""
    missing = [k for k in ("input", *SIDES) if k not in obj]
    if missing:
        raise Unconvertible("missing_field", f"preference example needs {', '.join(map(repr, missing))}")
    given = obj["input"]
    if not isinstance(given, dict):
        raise Unconvertible("missing_field", f"'input' must be an object with 'messages' ({_kind(given)})")
    for side in SIDES:
        if not isinstance(obj[side], list):
            raise Unconvertible("missing_field", f"{side!r} must be a list of messages ({_kind(obj[side])})")
    return {"input": {k: v for k, v in given.items() if k in INPUT_KEYS},
            "preferred_output": obj["preferred_output"], "non_preferred_output": obj["non_preferred_output"]}


def from_trl(obj: dict) -> dict:
    """TRL's preference row: explicit prompt or implicit (shared by both), text or conversation."""
    chosen, rejected, prompt = obj.get("chosen"), obj.get("rejected"), obj.get("prompt")
    if prompt is None:
        prompt, chosen, rejected = _split_implicit(chosen, rejected)
    out = {"input": {"messages": _messages(prompt, "user", "prompt")},
           "preferred_output": _messages(chosen, "assistant", "chosen"),
           "non_preferred_output": _messages(rejected, "assistant", "rejected")}
    if obj.get("tools") is not None:
        out["input"]["tools"] = obj["tools"]
    return out


def _messages(value, role: str, key: str) -> list:
    if isinstance(value, str):
        return [{"role": role, "content": value}]
    if isinstance(value, list):
        return [_string_arguments(m) for m in value]  # TRL's tool arguments are objects
    got = "missing" if value is None else _kind(value)
    raise Unconvertible("missing_field", f"trl preference example needs {key!r} as text or messages ({got})")


def _split_implicit(chosen, rejected):
    """TRL's implicit prompt: what both answers share is the prompt (as trl.extract_prompt)."""
    if isinstance(chosen, list) and isinstance(rejected, list):
        n = 0
        while n < min(len(chosen), len(rejected)) - 1 and chosen[n] == rejected[n]:
            n += 1
        if not n:
            raise Unconvertible("missing_field", "'chosen' and 'rejected' share no prompt messages (add 'prompt')")
        return chosen[:n], chosen[n:], rejected[n:]
    if isinstance(chosen, str) and isinstance(rejected, str):
        n = len(_common(chosen, rejected))
        if n and n < len(chosen) and chosen[n - 1] == " ":
            n -= 1  # the space belongs to the answer, as TRL cuts it
        if not n:
            raise Unconvertible("missing_field", "'chosen' and 'rejected' share no prompt text (add 'prompt')")
        return chosen[:n], chosen[n:], rejected[n:]
    raise Unconvertible("missing_field", "trl preference example needs 'chosen' and 'rejected' of one type")


def _common(a: str, b: str) -> str:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return a[:n]


_READERS.update({"openai-preference": from_openai, "trl-preference": from_trl})
