"""Checks of one canonical example, and its token counts.

This is the hot loop of validation (run for every example, in worker processes for big files),
so it is written flat: one pass over the messages, no per-message helper calls on the clean path.
The checks are OpenAI's cookbook floor plus what it misses (tools, tool_calls, the tool role,
list-of-parts content, weight, literal special tokens, empty content).
"""

from __future__ import annotations

import re

import orjson

ROLES = frozenset({"system", "user", "assistant", "tool", "function"})
PLAIN_ROLES = frozenset({"system", "user", "assistant"})  # {role, content} is all they need
MESSAGE_KEYS = frozenset({"role", "content", "name", "weight", "function_call", "tool_calls", "tool_call_id"})
TOP_KEYS = frozenset({"messages", "tools", "parallel_tool_calls"})
PART_TYPES = frozenset({"text", "image_url"})

# Literal control tokens of OpenAI, ChatML, Llama 3 and harmony templates: in content they are
# either refused by OpenAI ("invalid special tokens") or silently break a local chat template.
SPECIAL_TOKEN = re.compile(
    r"<\|(?:endoftext|endofprompt|fim_prefix|fim_middle|fim_suffix|im_start|im_end|im_sep"
    r"|begin_of_text|end_of_text|start_header_id|end_header_id|eot_id|eom_id|python_tag"
    r"|start|end|message|channel|constrain|return|call)\|>"
)

# Token accounting as in OpenAI's cookbook: 3 per message, 1 more per name, 3 to prime the reply.
PER_MESSAGE, PER_NAME, PER_EXAMPLE = 3, 1, 3
# (counter, system prompt) -> its tokens: a dataset repeats its system prompt in most examples,
# so each distinct one is counted once (bounded: cleared when full).
_SYSTEM_TOKENS: dict = {}
MAX_SYSTEM_PROMPTS = 256


def check_example(example: dict, problems: list, count) -> tuple[int, int, int, bool]:
    """Append (code, message, is_error) for each problem; return (tokens, trained tokens,
    messages, has_system). Counts are best effort on broken examples."""
    messages = example.get("messages")
    if type(messages) is not list or not messages:
        problems.append(("missing_messages", "no 'messages' list (or it is empty)", True))
        return 0, 0, 0, False
    if example.keys() - TOP_KEYS:
        extra = ", ".join(sorted(map(str, example.keys() - TOP_KEYS)))
        problems.append(("unknown_key", f"top-level key(s) {extra} ignored", False))
    total, trained = PER_EXAMPLE, 0
    tools = example.get("tools")
    if tools is not None:
        total += _check_tools(tools, problems, count)
    call_ids: set = set()
    has_assistant = has_system = False
    for i, m in enumerate(messages, 1):
        if type(m) is not dict:
            problems.append(("message_missing_key", f"message {i} is not an object", True))
            continue
        role = m.get("role")
        content = m.get("content")
        total += PER_MESSAGE + (count(role) if type(role) is str else 0)
        if len(m) != 2 or type(role) is not str or role not in PLAIN_ROLES or type(content) is not str:
            total += _check_unusual(m, i, role, problems, count, call_ids)
        if role == "assistant":
            has_assistant = True
            if type(content) is str:
                n = count(content)
                total += n
                if m.get("weight", 1) != 0:
                    trained += n
        elif role == "system":
            has_system = True
            if type(content) is str:
                total += _system_tokens(content, count)
        elif type(content) is str:
            total += count(content)
        if type(content) is str and (not content or content.isspace()):
            if not (role == "assistant" and (m.get("tool_calls") or m.get("function_call"))):
                problems.append(("empty_content", f"message {i} ({role}) has empty content", True))
        elif type(content) is str and "<|" in content:
            _check_special(content, i, problems)
    if not has_assistant:
        problems.append(("no_assistant", "no assistant message", True))
    return total, trained, len(messages), has_system


def _system_tokens(content: str, count) -> int:
    n = _SYSTEM_TOKENS.get((count, content))
    if n is None:
        if len(_SYSTEM_TOKENS) >= MAX_SYSTEM_PROMPTS:
            _SYSTEM_TOKENS.clear()
        n = _SYSTEM_TOKENS[(count, content)] = count(content)
    return n


def _check_special(text: str, i: int, problems: list) -> None:
    found = SPECIAL_TOKEN.search(text)
    if found:
        problems.append(("special_token", f"message {i} contains the special token {found.group()}", True))


def _check_unusual(m: dict, i: int, role, problems: list, count, call_ids: set) -> int:
    """Everything beyond a plain {role, content: str} message; returns extra tokens."""
    tokens = 0
    if "role" not in m or ("content" not in m and not (m.get("tool_calls") or m.get("function_call"))):
        missing = "role" if "role" not in m else "content"
        problems.append(("message_missing_key", f"message {i} has no {missing!r}", True))
    extra = m.keys() - MESSAGE_KEYS
    if extra:
        problems.append(("message_unrecognized_key", f"message {i} has key(s) {', '.join(sorted(map(str, extra)))}", True))
    if "role" in m and (type(role) is not str or role not in ROLES):
        problems.append(("unrecognized_role", f"message {i} has role {role!r}", True))
    tokens += _check_content(m, i, role, problems, count)
    if "weight" in m:
        _check_weight(m["weight"], i, role, problems)
    if "name" in m:
        name = m["name"]
        if type(name) is str and name:
            tokens += count(name) + PER_NAME
        else:
            problems.append(("invalid_name", f"message {i} has a 'name' that is not a non-empty string", True))
    if "tool_calls" in m:
        tokens += _check_tool_calls(m["tool_calls"], i, role, problems, count, call_ids)
    if "function_call" in m:
        tokens += count(orjson.dumps(m["function_call"]).decode())
    if role == "tool":
        _check_tool_reply(m, i, problems, call_ids)
    return tokens


def _check_content(m: dict, i: int, role, problems: list, count) -> int:
    content = m.get("content")
    if type(content) is str or "content" not in m:
        return 0
    if content is None:
        if not (role == "assistant" and (m.get("tool_calls") or m.get("function_call"))):
            problems.append(("missing_content", f"message {i} ({role}) has null content", True))
        return 0
    if type(content) is not list:
        problems.append(("missing_content", f"message {i} content is {type(content).__name__}, not a string", True))
        return 0
    return _check_parts(content, i, role, problems, count)


def _check_parts(parts: list, i: int, role, problems: list, count) -> int:
    """List-of-parts content: text parts anywhere, image_url parts in user messages only."""
    tokens = 0
    if not parts:
        problems.append(("content_parts", f"message {i} content is an empty list", True))
    for j, part in enumerate(parts, 1):
        kind = part.get("type") if type(part) is dict else None
        if kind == "text" and type(part.get("text")) is str:
            tokens += count(part["text"])
            if "<|" in part["text"]:
                _check_special(part["text"], i, problems)
        elif kind == "image_url" and role == "user" and type(part.get("image_url")) is dict \
                and type(part["image_url"].get("url")) is str:
            continue  # image tokens are priced by OpenAI separately: not counted here
        else:
            why = f"type {kind!r}" if kind not in PART_TYPES else f"a malformed or misplaced {kind} part"
            problems.append(("content_parts", f"message {i} part {j} is {why}", True))
    return tokens


def _check_weight(weight, i: int, role, problems: list) -> None:
    if type(weight) is not int or weight not in (0, 1):
        problems.append(("invalid_weight", f"message {i} has weight {weight!r}; only 0 or 1 are allowed", True))
    elif role != "assistant":
        problems.append(("invalid_weight", f"message {i} ({role}) has a weight; only assistant messages may", True))


def _check_tools(tools, problems: list, count) -> int:
    if type(tools) is not list or not tools:
        problems.append(("invalid_tools", "'tools' must be a non-empty list", True))
        return 0
    for j, tool in enumerate(tools, 1):
        fn = tool.get("function") if type(tool) is dict else None
        if type(tool) is not dict or tool.get("type") != "function" or type(fn) is not dict \
                or type(fn.get("name")) is not str or not fn["name"]:
            problems.append(("invalid_tools", f"tools[{j}] is not {{'type': 'function', 'function': {{'name': ...}}}}", True))
        elif "parameters" in fn and type(fn["parameters"]) is not dict:
            problems.append(("invalid_tools", f"tools[{j}] parameters must be a JSON schema object", True))
    return count(orjson.dumps(tools).decode())


def _check_tool_calls(calls, i: int, role, problems: list, count, call_ids: set) -> int:
    if role != "assistant":
        problems.append(("invalid_tool_calls", f"message {i} ({role}) has tool_calls; only assistant messages may", True))
    if type(calls) is not list or not calls:
        problems.append(("invalid_tool_calls", f"message {i} tool_calls must be a non-empty list", True))
        return 0
    for j, call in enumerate(calls, 1):
        problem = _tool_call_problem(call)
        if problem:
            problems.append(("invalid_tool_calls", f"message {i} tool_calls[{j}] {problem}", True))
        else:
            call_ids.add(call["id"])
    return count(orjson.dumps(calls).decode())


def _tool_call_problem(call) -> str | None:
    if type(call) is not dict or type(call.get("id")) is not str or not call["id"]:
        return "needs a string 'id'"
    fn = call.get("function")
    if call.get("type") != "function" or type(fn) is not dict or type(fn.get("name")) is not str:
        return "must be {'type': 'function', 'function': {'name': ..., 'arguments': ...}}"
    if type(fn.get("arguments")) is not str:
        return "arguments must be a JSON string"
    try:
        orjson.loads(fn["arguments"])
    except orjson.JSONDecodeError:
        return "arguments are not valid JSON"
    return None


def _check_tool_reply(m: dict, i: int, problems: list, call_ids: set) -> None:
    call_id = m.get("tool_call_id")
    if type(call_id) is not str:
        problems.append(("invalid_tool_message", f"message {i} (tool) needs a string 'tool_call_id'", True))
    elif call_id not in call_ids:
        problems.append(("invalid_tool_message", f"message {i} answers tool_call_id {call_id!r}, which no earlier assistant message called", True))
