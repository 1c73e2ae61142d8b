"""The training-file checks OpenAI runs while a job is `validating_files`: OpenAI's surface, used
by its stand-in and by `ftm serve` alike.

Only what the provider does (its errors end a job as `failed` with a code and message);
ftm's own, stricter checks live in the data layer and run before a job is ever created.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from ...facts import MIN_EXAMPLES

SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|fim_prefix|>",
                  "<|fim_middle|>", "<|fim_suffix|>", "<|endofprompt|>")
ROLES = {"system", "developer", "user", "assistant", "tool", "function"}
TOKEN = re.compile(r"\w+|[^\w\s]")


@dataclass
class FileReport:
    """What validating one file found: its size in examples and tokens, or OpenAI's error."""

    n_examples: int = 0
    tokens: int = 0  # one epoch's tokens, by a rough word-piece count
    error: dict | None = None  # {"code", "message", "param"} when OpenAI would fail the job


def count_tokens(text: str) -> int:
    """A deterministic stand-in for a tokenizer: words and punctuation marks."""
    return len(TOKEN.findall(text))


def check_file(path: Path, param: str = "training_file", label: str = "Training",
               min_examples: int = MIN_EXAMPLES, method: str = "supervised") -> FileReport:
    """Stream a JSONL file the way OpenAI validates it for the job's method; stop at the first error."""
    report = FileReport()
    check_line = _check_pair if method == "dpo" else _check_line
    with open(path, "rb") as fh:
        for n, raw in enumerate(fh, 1):
            if not raw.strip():
                continue
            problem, tokens = check_line(raw)
            if problem:
                report.error = _error("invalid_file_format", f"Invalid file format. Line {n}, {problem}", param)
                return report
            report.n_examples += 1
            report.tokens += tokens
    if report.n_examples < min_examples:
        message = (f"{label} file has {report.n_examples} example(s), but must have at least "
                   f"{min_examples} examples")
        report.error = _error("invalid_n_examples", message, param)
    return report


def file_kind(path: Path, longest: int = 1 << 20) -> str | None:
    """"preference" or "chat" by the keys of a file's first example (None when it shows neither),
    reading at most `longest` bytes of it: what a job's method is checked against before it is made."""
    with open(path, "rb") as fh:
        raw = fh.read(longest).lstrip().split(b"\n", 1)[0]
    try:
        example = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    if not isinstance(example, dict):
        return None
    if "preferred_output" in example or "non_preferred_output" in example or "input" in example:
        return "preference"
    return "chat" if "messages" in example else None


def _error(code: str, message: str, param: str) -> dict:
    return {"code": code, "message": message, "param": param}


def _check_line(raw: bytes) -> tuple[str | None, int]:
    """(problem, tokens) for one line: problem is None when OpenAI would accept it."""
    try:
        example = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return "could not parse the line as JSON", 0
    messages = example.get("messages") if isinstance(example, dict) else None
    if not isinstance(messages, list) or not messages:
        return 'key "messages": missing or not a list of messages', 0
    tokens = 3
    for i, message in enumerate(messages, 1):
        problem = _check_message(message)
        if problem:
            return f"message {i}, {problem}", 0
        tokens += 3 + count_tokens(_text(message.get("content")))
    if not any(m.get("role") == "assistant" for m in messages):
        return "an example must contain at least one assistant message", 0
    return None, tokens


def _check_pair(raw: bytes) -> tuple[str | None, int]:
    """A preference line as OpenAI checks it for DPO: input.messages, and one assistant message
    in each of preferred_output and non_preferred_output."""
    try:
        example = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return "could not parse the line as JSON", 0
    given = example.get("input") if isinstance(example, dict) else None
    messages = given.get("messages") if isinstance(given, dict) else None
    if not isinstance(messages, list) or not messages:
        return 'key "input.messages": missing or not a list of messages', 0
    tokens = 3
    for key, part in (("input.messages", messages), ("preferred_output", example.get("preferred_output")),
                      ("non_preferred_output", example.get("non_preferred_output"))):
        if key != "input.messages" and not (isinstance(part, list) and len(part) == 1
                                            and isinstance(part[0], dict) and part[0].get("role") == "assistant"):
            return f'key "{key}": must be a list of exactly one assistant message', 0
        for i, message in enumerate(part, 1):
            problem = _check_message(message)
            if problem:
                return f"{key} message {i}, {problem}", 0
            tokens += 3 + count_tokens(_text(message.get("content")))
    return None, tokens


def _check_message(message) -> str | None:
    if not isinstance(message, dict) or message.get("role") not in ROLES:
        return 'key "role": missing or not one of ' + ", ".join(sorted(ROLES))
    content = message.get("content")
    if content is None and not (message.get("tool_calls") or message.get("function_call")):
        return 'key "content": missing'
    if any(token in _text(content) for token in SPECIAL_TOKENS):
        return 'key "content": contains invalid special tokens'
    return None


def _text(content) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # list of parts
        return " ".join(p.get("text", "") for p in content if isinstance(p, dict))
    return ""
