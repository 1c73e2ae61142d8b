"""Preference datasets (for DPO): read OpenAI's, Together's and TRL's pairs into one canonical
form, check each pair, and write them back out for each provider.

Canonical form is OpenAI's preference JSONL, which Together reads as is:
{"input": {"messages": [...], "tools": [...]}, "preferred_output": [assistant message],
 "non_preferred_output": [assistant message]}. TRL's rows ({"prompt", "chosen", "rejected"}, as
text or as conversations, or with the prompt left implicit in both conversations) convert to it.

A dataset's kind ("chat" or "preference") follows from the format it was read in; a preference
file given where chat data is expected (and the reverse) is refused by `require_kind`.
"""

from __future__ import annotations

import re

from ..errors import InvalidInput
from .export import PREFERENCE_WRITERS as WRITERS, CannotHold
from .formats import SIDES, TOP_KEYS

FORMATS = ("openai-preference", "trl-preference")
EXPORTS = ("openai", "together", "fireworks", "trl")
KINDS = {"chat": "chat examples ('messages')", "preference": "preference pairs (chosen and rejected answers)"}


def kind_of(fmt: str) -> str:
    """"preference" for the formats of preference pairs, else "chat"."""
    return "preference" if fmt in FORMATS else "chat"


def canonical_format(kind: str) -> str:
    """The format a stored dataset of this kind is read back in."""
    return "openai-preference" if kind == "preference" else "openai"


def require_kind(dataset: dict, wanted: str, purpose: str) -> None:
    """Refuse, in one line, a dataset of the other kind (a preference file for an SFT run...)."""
    kind = dataset.get("kind") or "chat"
    if kind != wanted:
        hint = "Use --method dpo, or give a chat dataset." if kind == "preference" else \
            "Give a preference dataset (input, preferred_output, non_preferred_output), or use --method supervised."
        raise InvalidInput(f"dataset {dataset.get('name') or dataset.get('id')} holds {KINDS[kind]}, "
                           f"but {purpose} needs {KINDS[wanted]}", hint)


# --- checking -------------------------------------------------------------------------------

_MESSAGE_N = re.compile(r"\bmessages? (\d+)")


def check_pair(example: dict, problems: list, count, provider: str | None = None) -> tuple[int, int, int, bool]:
    """check_example's work for a pair: (code, message, is_error) appended to problems;
    returns (tokens of the prompt and its longer answer, answer tokens, messages, has_system)."""
    from .checks import check_example

    prompt = example["input"].get("messages")
    if type(prompt) is not list or not prompt:
        problems.append(("missing_messages", "'input' has no 'messages' list (or it is empty)", True))
        return 0, 0, 0, False
    if example.keys() - TOP_KEYS:
        problems.append(("unknown_key", f"top-level key(s) {', '.join(sorted(example.keys() - TOP_KEYS))} ignored", False))
    lengths, sides_ok = [], True
    for side in SIDES:
        found: list = []
        tools = {"tools": example["input"]["tools"]} if "tools" in example["input"] else {}
        tokens, _, _, has_system = check_example({"messages": prompt + example[side], **tools}, found, count)
        lengths.append(tokens)
        problems += _relabelled(found, len(prompt), side, keep_prompt=side == SIDES[0])
        sides_ok &= _check_side(example[side], side, problems)
    _check_prompt_end(prompt, problems)
    if sides_ok and example["preferred_output"] == example["non_preferred_output"]:
        problems.append(("identical_pair", "preferred_output and non_preferred_output are the same", True))
    if provider and not any(error for *_, error in problems):
        _provider_problem(example, provider, problems)
    prompt_tokens = check_example({"messages": prompt}, [], count)[0]
    answers = sum(lengths) - 2 * prompt_tokens
    return max(lengths), max(answers, 0), len(prompt) + 1, has_system


def _relabelled(found: list, n_prompt: int, side: str, keep_prompt: bool) -> list:
    """check_example's problems of one side, messages counted within input or the side's list;
    problems of the prompt are kept from one side only, so each is said once."""
    out = []
    for code, message, error in found:
        if code == "no_assistant":
            continue  # _check_side says which side lacks its answer
        n = _MESSAGE_N.search(message)
        if n and int(n.group(1)) > n_prompt:
            message = f"{side} " + _MESSAGE_N.sub(lambda m: f"message {int(m.group(1)) - n_prompt}", message, 1)
        elif n:
            if not keep_prompt:
                continue
            message = "input " + message
        elif not keep_prompt:
            continue
        out.append((code, message, error))
    return out


def _check_side(messages: list, side: str, problems: list) -> bool:
    """OpenAI's rule: each side is exactly one assistant message (the answer to the prompt)."""
    if len(messages) != 1 or type(messages[0]) is not dict or messages[0].get("role") != "assistant":
        problems.append(("invalid_output", f"{side} must be a list of exactly one assistant message", True))
        return False
    m = messages[0]
    if not m.get("tool_calls") and (type(m.get("content")) is not str or not m["content"].strip()):
        if type(m.get("content")) is str:
            return False  # check_example has said it is empty
        problems.append(("invalid_output", f"{side} has no text content", True))
        return False
    return True


def _check_prompt_end(prompt: list, problems: list) -> None:
    last = prompt[-1]
    if type(last) is dict and last.get("role") == "assistant":
        problems.append(("invalid_input", "input ends with an assistant message; the answers must follow a user "
                         "(or tool) message", True))


def _provider_problem(example: dict, provider: str, problems: list) -> None:
    try:
        WRITERS[provider](example)
    except CannotHold as why:
        problems.append(("provider_rule", f"{provider}: {why}", True))
    except KeyError:
        raise InvalidInput(f"ftm knows no preference data rules for {provider!r}",
                           f"Choose one of: {', '.join(p for p in WRITERS if p not in ('openai', 'trl'))}.") from None
