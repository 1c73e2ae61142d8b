"""POST /chat/completions: a request checked as OpenAI checks it, answered by the service, in OpenAI's shapes.

Every parameter a client may send is honoured or refused with a 400 that names it; none is
silently ignored. Messages reach the service normalised: content as text (a list of text parts
joined), `developer` as `system`, an assistant turn with `tool_calls` and no content as
content "" beside its calls, each `tool` turn answering a call made before it.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Iterator

from ...asks import Ask, Done, Piece
from ..request import ClientGone, Stream
from ..state import ApiError, new_id

ROLES = ("system", "developer", "user", "assistant", "tool", "function")
MAX_CHOICES = 8
MAX_STOPS = 4
# Accepted because they change nothing in the answer (bookkeeping, routing hints).
HARMLESS = {"user", "store", "metadata", "service_tier", "parallel_tool_calls", "prompt_cache_key",
            "safety_identifier"}
# Accepted only at the value that means "off"; anything else is refused, never ignored.
OFF = {"frequency_penalty": (0, 0.0), "presence_penalty": (0, 0.0), "logit_bias": ({},),
       "modalities": (["text"],), "audio": (), "prediction": (), "reasoning_effort": (),
       "web_search_options": (), "verbosity": ()}
KNOWN = {"model", "messages", "stream", "stream_options", "n", "stop", "max_tokens", "max_completion_tokens",
         "temperature", "top_p", "seed", "logprobs", "top_logprobs", "response_format", "tools",
         "tool_choice", "functions", "function_call"} | HARMLESS | set(OFF)


@dataclass
class ChatRequest:
    model: str
    ask: Ask
    n: int = 1
    stream: bool = False
    include_usage: bool = False
    extra: dict = field(default_factory=dict)


def completion(srv, body: dict, gone=None):
    """A chat.completion (or a Stream of chunks) from the service for a request body.

    gone: an Event set when the client has left; answering stops at the next piece.
    """
    chat = parse(body, default_temperature=srv.service.default_temperature)
    with srv.state.lock:  # only the lookup: answering runs unlocked, beside other requests
        srv.service.check_model(chat.model)
    if chat.stream:
        return Stream(_chunks(srv, chat))

    def one(_=None):
        return _answer(srv.service.chat(chat.model, chat.ask), gone)

    if chat.n == 1:
        answers = [one()]
    else:  # together: the service batches them
        with ThreadPoolExecutor(chat.n) as pool:
            answers = list(pool.map(one, range(chat.n)))
    choices = [{"index": i, "finish_reason": done.finish_reason, "logprobs": _logprobs(chat, pieces),
                "message": {"role": "assistant", "content": done.text, "refusal": None, "annotations": []}}
               for i, (pieces, done) in enumerate(answers)]
    return {"id": new_id("chatcmpl-"), "object": "chat.completion", "created": int(time.time()),
            "model": chat.model, "choices": choices, "usage": _usage([d for _, d in answers])}


def _answer(stream: Iterator, gone=None) -> tuple[list, Done]:
    pieces = []
    try:
        for item in stream:
            if isinstance(item, Done):
                return pieces, item
            if gone is not None and gone.is_set():
                raise ClientGone
            pieces.append(item)
    finally:
        close = getattr(stream, "close", None)
        if close:
            close()  # stops the answer being made, if it is not finished
    raise ApiError(500, "The model stopped without finishing its answer.", type="server_error")


def _logprobs(chat: ChatRequest, pieces: list[Piece]) -> dict | None:
    if not chat.ask.logprobs:
        return None
    return {"content": [lp for p in pieces for lp in (p.logprobs or [])], "refusal": None}


def _usage(dones: list[Done]) -> dict:
    prompt = dones[0].prompt_tokens if dones else 0
    completion = sum(d.completion_tokens for d in dones)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _chunks(srv, chat: ChatRequest):
    """chat.completion.chunk objects, choice by choice: the role, each piece, the finish reason."""
    head = {"id": new_id("chatcmpl-"), "object": "chat.completion.chunk", "created": int(time.time()),
            "model": chat.model, "system_fingerprint": None}

    def chunk(i: int, delta: dict, finish=None, logprobs=None) -> dict:
        return {**head, "choices": [{"index": i, "delta": delta, "logprobs": logprobs, "finish_reason": finish}]}

    dones = []
    for i in range(chat.n):
        yield chunk(i, {"role": "assistant", "content": "", "refusal": None})
        answer = srv.service.chat(chat.model, chat.ask)
        try:
            for item in answer:
                if isinstance(item, Done):
                    dones.append(item)
                    break
                lp = {"content": item.logprobs or [], "refusal": None} if chat.ask.logprobs else None
                yield chunk(i, {"content": item.text}, logprobs=lp)
        finally:
            close = getattr(answer, "close", None)
            if close:
                close()  # a client gone mid-answer stops its generation
        yield chunk(i, {}, dones[-1].finish_reason if len(dones) > i else "stop")
    if chat.include_usage:
        yield {**head, "choices": [], "usage": _usage(dones)}


# --- checking a request ---------------------------------------------------------------------


def parse(body: dict, default_temperature: float = 1.0) -> ChatRequest:
    """The request's model, messages and sampling, or the 400 OpenAI would answer."""
    unknown = sorted(set(body) - KNOWN)
    if unknown:
        raise ApiError(400, f"Unrecognized request argument supplied: {unknown[0]}", param=unknown[0])
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise ApiError(400, "Missing required parameter: 'model'." if model is None else
                       f"Invalid type for 'model': expected a string, but got {_kind(model)} instead.",
                       param="model", code="invalid_type" if model is not None else None)
    _refuse_unsupported(body)
    ask = Ask(target=None, messages=messages(body.get("messages")), max_tokens=_max_tokens(body),
              temperature=_number(body, "temperature", 0, 2, default_temperature),
              top_p=_number(body, "top_p", 0, 1, 1.0), stop=_stop(body.get("stop")), seed=_seed(body))
    ask.logprobs, ask.top_logprobs = _logprob_params(body)
    stream, include_usage = _stream(body)
    return ChatRequest(model, ask, n=_integer(body, "n", 1, MAX_CHOICES, 1), stream=stream,
                       include_usage=include_usage)


def _kind(value) -> str:
    names = {bool: "a boolean", int: "an integer", float: "a decimal", str: "a string",
             list: "an array", dict: "an object", type(None): "null"}
    return names.get(type(value), "an unknown type")


def _bad_type(param: str, expected: str, value) -> ApiError:
    return ApiError(400, f"Invalid type for '{param}': expected {expected}, but got {_kind(value)} instead.",
                    param=param, code="invalid_type")


def _unsupported(param: str, what: str) -> ApiError:
    return ApiError(400, f"Unsupported parameter: '{param}' {what} is not supported by this server.",
                    param=param, code="unsupported_parameter")


def _refuse_unsupported(body: dict) -> None:
    for name, off in OFF.items():
        if name in body and body[name] is not None and body[name] not in off:
            raise _unsupported(name, f"set to {str(body[name])[:40]!r}")
    fmt = body.get("response_format")
    if fmt is not None:
        if not isinstance(fmt, dict) or not isinstance(fmt.get("type"), str):
            raise _bad_type("response_format", "an object with a 'type'", fmt)
        if fmt["type"] != "text":
            raise _unsupported("response_format", f"of type {fmt['type'][:40]!r} (structured output)")
    for tools, choice in (("tools", "tool_choice"), ("functions", "function_call")):
        if body.get(tools) is not None and not isinstance(body[tools], list):
            raise _bad_type(tools, "an array", body[tools])
        if body.get(tools) and body.get(choice) != "none":
            raise _unsupported(tools, f"with {choice} {body.get(choice, 'auto')!r} (calling tools)")


def _integer(body: dict, name: str, low: int, high: int | None, default):
    value = body.get(name)
    if value is None:
        return default
    if not isinstance(value, int) or isinstance(value, bool):
        raise _bad_type(name, "an integer", value)
    if value < low or (high is not None and value > high):
        top = f" and at most {high}" if high is not None else ""
        raise ApiError(400, f"Invalid '{name}': {value}; expected at least {low}{top}.", param=name,
                       code="invalid_value")
    return value


def _number(body: dict, name: str, low: float, high: float, default: float) -> float:
    value = body.get(name)
    if value is None:
        return default
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise _bad_type(name, "a number", value)
    if not low <= value <= high:
        raise ApiError(400, f"Invalid '{name}': {value}; expected a number from {low} to {high}.",
                       param=name, code="invalid_value")
    return float(value)


def _max_tokens(body: dict) -> int | None:
    name = "max_completion_tokens" if body.get("max_completion_tokens") is not None else "max_tokens"
    return _integer(body, name, 1, None, None)


def _seed(body: dict) -> int | None:
    return _integer(body, "seed", -(2**63), 2**63 - 1, None)


def _stop(value) -> tuple[str, ...]:
    if value is None:
        return ()
    stops = [value] if isinstance(value, str) else value
    if not isinstance(stops, list) or not all(isinstance(s, str) and s for s in stops):
        raise _bad_type("stop", "a string or an array of non-empty strings", value)
    if len(stops) > MAX_STOPS:
        raise ApiError(400, f"Invalid 'stop': at most {MAX_STOPS} sequences.", param="stop", code="invalid_value")
    return tuple(stops)


def _logprob_params(body: dict) -> tuple[bool, int]:
    wanted = body.get("logprobs")
    if wanted is not None and not isinstance(wanted, bool):
        raise _bad_type("logprobs", "a boolean", wanted)
    top = _integer(body, "top_logprobs", 0, 20, 0)
    if top and not wanted:
        raise ApiError(400, "Invalid 'top_logprobs': it needs 'logprobs' set to true.", param="top_logprobs")
    return bool(wanted), top


def _stream(body: dict) -> tuple[bool, bool]:
    stream, options = body.get("stream"), body.get("stream_options")
    if stream is not None and not isinstance(stream, bool):
        raise _bad_type("stream", "a boolean", stream)
    if options is not None:
        if not isinstance(options, dict):
            raise _bad_type("stream_options", "an object", options)
        if not stream:
            raise ApiError(400, "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
                           param="stream_options")
        usage = options.get("include_usage")
        if usage is not None and not isinstance(usage, bool):
            raise _bad_type("stream_options.include_usage", "a boolean", usage)
        return True, bool(usage)
    return bool(stream), False


# --- checking messages ----------------------------------------------------------------------


def messages(value) -> list[dict]:
    """OpenAI's chat messages, checked and normalised for a chat template."""
    if not isinstance(value, list):
        if value is None:
            raise ApiError(400, "Missing required parameter: 'messages'.", param="messages")
        raise _bad_type("messages", "an array", value)
    if not value:
        raise ApiError(400, "Invalid 'messages': empty array. Expected an array with minimum length 1.",
                       param="messages", code="empty_array")
    out, calls = [], set()
    for i, message in enumerate(value):
        out.append(_message(message, f"messages[{i}]", calls))
    return out


def _message(message, where: str, calls: set) -> dict:
    if not isinstance(message, dict):
        raise _bad_type(where, "an object", message)
    role = message.get("role")
    if role is None:
        raise ApiError(400, f"Missing required parameter: '{where}.role'.", param=f"{where}.role")
    if role not in ROLES:
        raise ApiError(400, f"Invalid value: {str(role)[:40]!r}. Supported values are: 'system', 'assistant', "
                       "'user', 'function', 'tool', and 'developer'.", param=f"{where}.role", code="invalid_value")
    out = {"role": "system" if role == "developer" else role,
           "content": _content(message.get("content"), role, where)}
    if role == "assistant":
        out.update(_tool_calls(message, where, calls))
    elif out["content"] is None:
        raise _bad_type(f"{where}.content", "a string or an array of content parts", None)
    if role == "tool":
        call = message.get("tool_call_id")
        if not isinstance(call, str) or call not in calls:
            raise ApiError(400, "Invalid parameter: messages with role 'tool' must be a response to a preceding "
                           "message with 'tool_calls' (by its 'tool_call_id').", param=f"{where}.tool_call_id")
        out["tool_call_id"] = call
    if isinstance(message.get("name"), str):
        out["name"] = message["name"]
    return out


def _content(content, role: str, where: str) -> str | None:
    if content is None or isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise _bad_type(f"{where}.content", "a string or an array of content parts", content)
    allowed = {"text", "refusal"} if role == "assistant" else {"text"}
    texts = []
    for j, part in enumerate(content):
        if not isinstance(part, dict) or not isinstance(part.get("type"), str):
            raise _bad_type(f"{where}.content[{j}]", "an object with a 'type'", part)
        if part["type"] not in allowed:
            raise ApiError(400, f"Invalid '{where}.content[{j}].type': {part['type'][:40]!r} content is not "
                           f"supported by this server's text models (use {' or '.join(sorted(allowed))}).",
                           param=f"{where}.content[{j}].type", code="invalid_value")
        text = part.get(part["type"])
        if not isinstance(text, str):
            raise _bad_type(f"{where}.content[{j}].{part['type']}", "a string", text)
        texts.append(text)
    return "".join(texts)


def _tool_calls(message: dict, where: str, calls: set) -> dict:
    raw = message.get("tool_calls")
    if raw is None:
        if message.get("content") is None and message.get("function_call") is None:
            raise ApiError(400, f"Invalid '{where}': an assistant message needs 'content' or 'tool_calls'.",
                           param=f"{where}.content")
        return {} if message.get("content") is not None else {"content": ""}
    if not isinstance(raw, list) or not raw:
        raise _bad_type(f"{where}.tool_calls", "a non-empty array", raw)
    out = []
    for j, call in enumerate(raw):
        fn = call.get("function") if isinstance(call, dict) else None
        if not (isinstance(call, dict) and isinstance(call.get("id"), str) and isinstance(fn, dict)
                and isinstance(fn.get("name"), str) and isinstance(fn.get("arguments"), str)):
            raise _bad_type(f"{where}.tool_calls[{j}]", "{id, type: 'function', function: {name, arguments}}", call)
        calls.add(call["id"])
        out.append({"id": call["id"], "type": "function",
                    "function": {"name": fn["name"], "arguments": fn["arguments"]}})
    content = message.get("content")
    return {"tool_calls": out, "content": "" if content is None else _content(content, "assistant", where)}
