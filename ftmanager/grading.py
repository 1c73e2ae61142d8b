"""Graders in OpenAI's published shapes, run by ftm: `string_check`, `text_similarity`, `score_model`.

OpenAI closed its Evals platform on 2026-11-30; teams keep their graders as JSON and run them
here. The shapes are the openai SDK's own (openai.types.graders), validated with its types, plus
the `pass_threshold` that OpenAI's eval testing criteria add. Templates follow OpenAI's guide:
`{{ item.x }}` is the held-out example (its `messages`, plus `reference`, the reference answer,
and `reference_json` when that answer is JSON) and `{{ sample.output_text }}` /
`{{ sample.output_json }}` the model's answer. A grade that cannot be computed (a missing variable,
a judge reply without a score) scores 0 and says why, as OpenAI's grader runs do.
"""

from __future__ import annotations

import json
import math
import os
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from . import metrics
from .errors import BackendError, InvalidInput

SUPPORTED = ("string_check", "text_similarity", "score_model")
_PATH = re.compile(r"[^.\[\]]+|\[\d+\]")
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
JUDGE_THREADS = 8
JUDGE_TIMEOUT_S = 60.0  # per request; FTM_JUDGE_TIMEOUT overrides
MAX_FILE_BYTES = 16 << 20  # a graders file is a few KB; anything this big is a mistake
# The reply OpenAI's score_model asks its judge for: reasoning steps, then a number.
GRADE_FORMAT = {"type": "json_schema", "json_schema": {"name": "grade", "strict": True, "schema": {
    "type": "object", "additionalProperties": False, "required": ["steps", "result"],
    "properties": {"result": {"type": "number"}, "steps": {"type": "array", "items": {
        "type": "object", "additionalProperties": False, "required": ["description", "conclusion"],
        "properties": {"description": {"type": "string"}, "conclusion": {"type": "string"}}}}}}}}


class MissingVariable(Exception):
    """A template names a variable the item or sample does not have."""


@dataclass
class Grade:
    score: float
    error: str | None = None


# --- reading graders ---------------------------------------------------------------------------


def load(path: str | Path) -> list[dict]:
    """The graders in a JSON file (one grader object or an array of them), validated."""
    try:
        raw = json.loads(_read(Path(path)), parse_constant=_no_constant)
    except (UnicodeDecodeError, json.JSONDecodeError, ValueError) as err:
        raise InvalidInput(f"{path} is not JSON ({err})", "Fix the graders file.") from None
    except RecursionError:
        raise InvalidInput(f"{path} is nested too deeply", "Graders are a few levels deep: fix the file.") from None
    graders = raw if isinstance(raw, list) else [raw]
    for i, grader in enumerate(graders):
        check(grader, f"{path}: grader {i + 1}")
    names = [g["name"] for g in graders]
    if len(set(names)) != len(names):
        raise InvalidInput(f"{path}: two graders share a name", "Give every grader its own name: grades are stored by it.")
    return graders


def _read(path: Path) -> str:
    """The file's text, refusing a folder, a FIFO or a device before opening it (a FIFO blocks)."""
    import stat

    try:
        info = path.stat()
    except FileNotFoundError:
        raise InvalidInput(f"no graders file {path}", "Give a JSON file of graders with --graders.") from None
    if not stat.S_ISREG(info.st_mode):
        what = "a folder" if stat.S_ISDIR(info.st_mode) else "not a regular file"
        raise InvalidInput(f"the graders file {path} is {what}", "Give a JSON file of graders with --graders.")
    if info.st_size > MAX_FILE_BYTES:
        raise InvalidInput(f"the graders file {path} is {info.st_size} bytes", "A graders file is a few KB: check the path.")
    return path.read_text(encoding="utf-8")


def _no_constant(name: str):
    raise ValueError(f"{name} is not a number JSON allows")


def check(grader, where: str) -> None:
    """Refuse a grader that is not in OpenAI's shape for its type (the SDK's types decide)."""
    if not isinstance(grader, dict):
        raise InvalidInput(f"{where} is not a JSON object", "Write each grader as an object.")
    kind = grader.get("type")
    if kind not in SUPPORTED:
        raise InvalidInput(f"{where} has type {kind!r}", f"ftm runs these grader types: {', '.join(SUPPORTED)}.")
    from pydantic import ValidationError

    shape = _shapes()[kind]
    unknown = set(grader) - set(shape.model_fields) - {"pass_threshold"}
    if unknown:
        raise InvalidInput(f"{where} ({kind}) has unknown fields: {', '.join(sorted(unknown))}",
                           "Use the fields of OpenAI's grader shape.")
    try:
        shape.model_validate({k: v for k, v in grader.items() if k != "pass_threshold"})
    except ValidationError as err:
        first = err.errors()[0]
        field = ".".join(str(p) for p in first["loc"])
        raise InvalidInput(f"{where} ({kind}): {field}: {first['msg']}", "Fix the grader to OpenAI's shape.") from None
    threshold = grader.get("pass_threshold")
    if threshold is not None and not _finite(threshold):
        raise InvalidInput(f"{where} ({kind}): pass_threshold is {threshold!r}", "Give a number.")
    _check_range(grader, f"{where} ({kind})")
    _check_supported_parts(grader, where)


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _check_range(grader: dict, where: str) -> None:
    """A score_model's range: two finite numbers, the low one first."""
    span = grader.get("range")
    if span is None:
        return
    if not (isinstance(span, list) and len(span) == 2 and all(map(_finite, span)) and span[0] < span[1]):
        raise InvalidInput(f"{where}: range is {json.dumps(span)[:80]}", "Give two increasing numbers, e.g. [0, 1].")


def _shapes() -> dict:
    from openai.types.graders import ScoreModelGrader, StringCheckGrader, TextSimilarityGrader

    return {"string_check": StringCheckGrader, "text_similarity": TextSimilarityGrader, "score_model": ScoreModelGrader}


def _check_supported_parts(grader: dict, where: str) -> None:
    if grader["type"] == "text_similarity" and grader["evaluation_metric"] in UNAVAILABLE:
        raise InvalidInput(f"{where}: {UNAVAILABLE[grader['evaluation_metric']]}", "Choose another evaluation_metric.")
    for message in grader.get("input", []) if grader["type"] == "score_model" else []:
        for part in _parts(message["content"]):
            if not isinstance(part, str) and part.get("type") not in ("input_text", "output_text"):
                raise InvalidInput(f"{where}: the judge's input has a part of type {part.get('type')}",
                                   "ftm's judges take text parts only (input_text, output_text).")


# --- templates -----------------------------------------------------------------------------------


def namespaces(messages: list[dict], reference: str, output: str) -> dict:
    """The `item` and `sample` namespaces of OpenAI's grader templates for one answer."""
    item = {"messages": messages, "reference": reference}
    sample = {"output_text": output}
    for space, key, text in ((item, "reference_json", reference), (sample, "output_json", output)):
        parsed = _json(text)
        if parsed is not None:
            space[key] = parsed
    return {"item": item, "sample": sample}


def _json(text: str):
    try:
        value = json.loads(text)
    except (ValueError, TypeError, RecursionError):  # ValueError: also an integer of over 4300 digits
        return None
    return value if isinstance(value, (dict, list)) else None


def render(template: str, ns: dict) -> str:
    """template with every {{ namespace.path }} replaced; raises MissingVariable. One pass with
    str.find, so a template of any size (say, many "{{" and no "}}") is read in linear time."""
    out, at = [], 0
    while (start := template.find("{{", at)) >= 0 and (end := template.find("}}", start + 2)) >= 0:
        out += [template[at:start], _text(lookup(ns, template[start + 2:end].strip()))]
        at = end + 2
    return "".join(out) + template[at:]


def lookup(ns: dict, path: str):
    """The value at a dotted path such as item.reference_json.capital or item.messages[0].content."""
    value = ns
    parts = _PATH.findall(path)
    if not parts or parts[0] not in ("item", "sample"):
        raise MissingVariable(f"{{{{{path}}}}} is not in the item or sample namespace")
    for part in parts:
        key = int(part[1:-1]) if part.startswith("[") else part
        try:
            value = value[key]
        except (KeyError, IndexError, TypeError):
            raise MissingVariable(f"{{{{{path}}}}} is not defined for this example") from None
    return value


def _text(value) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


# --- string_check and text_similarity ------------------------------------------------------------


def string_check(grader: dict, ns: dict) -> Grade:
    """1 or 0: eq/ne compare exactly; like/ilike ask whether input contains reference (ilike ignores case)."""
    given, reference = render(grader["input"], ns), render(grader["reference"], ns)
    op = grader["operation"]
    if op == "ilike":
        given, reference = given.lower(), reference.lower()
    hit = {"eq": given == reference, "ne": given != reference}.get(op, reference in given)
    return Grade(float(hit))


def text_similarity(grader: dict, ns: dict) -> Grade:
    """The evaluation_metric of input against reference, in [0, 1]."""
    given, reference = render(grader["input"], ns), render(grader["reference"], ns)
    return Grade(METRICS[grader["evaluation_metric"]](given, reference))


def _rouge(kind: str):
    return lambda given, reference: metrics.rouge(kind, given, reference)


METRICS = {"fuzzy_match": metrics.fuzzy, "bleu": metrics.sentence_bleu, "gleu": metrics.gleu, "rouge_l": _rouge("rougeL"),
           **{f"rouge_{n}": _rouge(f"rouge{n}") for n in range(1, 6)}}
# What OpenAI computes with its own hosted models or data, which ftm cannot do offline.
UNAVAILABLE = {
    "cosine": "cosine compares OpenAI text-embedding-3-large embeddings, which ftm has no offline equivalent of",
    "meteor": "meteor matches WordNet synonyms, and ftm ships no WordNet data",
}


# --- score_model -----------------------------------------------------------------------------------


class BadReply(Exception):
    """The judge answered, but not with a chat completion; the message says what it sent."""


class Judge:
    """An openai SDK client for any OpenAI-compatible judge (ftm serve, the stand-in, OpenAI)."""

    def __init__(self, base_url: str | None, say=None):
        import openai

        url = base_url or os.environ.get("FTM_JUDGE_BASE_URL") or os.environ.get("OPENAI_BASE_URL")
        key = os.environ.get("FTM_JUDGE_API_KEY") or os.environ.get("OPENAI_API_KEY") or "ftm-judge"
        self.timeout = judge_timeout()
        self.client = openai.OpenAI(base_url=url, api_key=key, max_retries=1, timeout=self.timeout)
        self.structured = True  # until the server says it has no structured output
        self.say = say or (lambda line: None)

    def ask(self, model: str, messages: list[dict], sampling: dict) -> str:
        """The judge's reply: in OpenAI's grade format where the server supports it."""
        import openai

        try:
            extra = {"response_format": GRADE_FORMAT} if self.structured else {}
            raw = self.client.chat.completions.with_raw_response.create(model=model, messages=messages, **extra, **sampling)
        except openai.APITimeoutError:
            self.say(f"the judge {model} gave no answer in {self.timeout:g} s (twice): graded 0")
            raise BadReply(f"model_grader_timeout: no answer in {self.timeout:g} s") from None
        except openai.APIConnectionError:
            raise BackendError(f"the judge at {self.client.base_url} cannot be reached",
                               "Start it, or point --judge-url (or FTM_JUDGE_BASE_URL) at an OpenAI-compatible server.") from None
        except openai.BadRequestError as err:
            if not extra or "response_format" not in str(err):
                raise
            self.structured = False
            return self.ask(model, messages, sampling)
        return reply_text(raw.content, raw.headers.get("content-type", ""))


def judge_timeout() -> float:
    """Seconds to wait for one judge reply: FTM_JUDGE_TIMEOUT, else JUDGE_TIMEOUT_S."""
    text = os.environ.get("FTM_JUDGE_TIMEOUT")
    try:
        value = float(text) if text else JUDGE_TIMEOUT_S
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise InvalidInput(f"FTM_JUDGE_TIMEOUT must be a number of seconds above 0, not {text!r}", "Try FTM_JUDGE_TIMEOUT=60.")
    return value


def reply_text(body: bytes, content_type: str) -> str:
    """The message content of a chat completion's JSON body; BadReply for anything else."""
    try:
        reply = json.loads(body)
    except (ValueError, RecursionError):  # not JSON, not UTF-8, or an integer of thousands of digits
        raise BadReply(f"model_grader_parse_error: the judge's answer is not JSON ({content_type or 'no content type'}: "
                       f"{body[:60]!r})") from None
    choices = reply.get("choices") if isinstance(reply, dict) else None
    first = choices[0] if isinstance(choices, list) and choices else None
    message = first.get("message") if isinstance(first, dict) else None
    content = message.get("content") if isinstance(message, dict) else None
    if not isinstance(content, str):
        raise BadReply(f"model_grader_parse_error: the judge's answer has no message content "
                       f"({json.dumps(reply)[:80]})")
    return content


def score_model(grader: dict, ns: dict, judge: Judge) -> Grade:
    """The judge model's score for one answer: its JSON `result`, or a bare number."""
    import openai

    messages = [{"role": "system" if m["role"] == "developer" else m["role"], "content": _content(m["content"], ns)}
                for m in grader["input"]]
    try:
        text = judge.ask(grader["model"], messages, _sampling(grader.get("sampling_params") or {}))
    except openai.APIStatusError as err:
        return Grade(0.0, f"model_grader_server_error: {err.status_code} {_message(err)}")
    except BadReply as bad:
        return Grade(0.0, str(bad))
    value = _score_in(text)
    if value is None or not math.isfinite(value):
        return Grade(0.0, f"model_grader_parse_error: no score in {text[:80]!r}")
    low, high = grader.get("range") or (0.0, 1.0)
    if not low <= value <= high:
        return Grade(min(max(value, low), high), f"score {value:g} outside range [{low:g}, {high:g}]")
    return Grade(value)


def _content(content, ns: dict) -> str:
    return "\n".join(render(part if isinstance(part, str) else part["text"], ns) for part in _parts(content))


def _parts(content) -> list:
    return [content] if isinstance(content, str) else list(content)


def _sampling(params: dict) -> dict:
    """OpenAI's grader sampling_params as chat.completions arguments (greedy unless told)."""
    out = {"temperature": params.get("temperature", 0.0)}
    for ours, theirs in (("top_p", "top_p"), ("seed", "seed"), ("reasoning_effort", "reasoning_effort"),
                         ("max_completions_tokens", "max_completion_tokens")):
        if params.get(ours) is not None:
            out[theirs] = params[ours]
    return out


def _score_in(text: str) -> float | None:
    """The `result` of OpenAI's structured judge reply, or a reply that is only a number."""
    parsed = _json(text.strip())
    if isinstance(parsed, dict) and isinstance(parsed.get("result"), (int, float)):
        try:
            return float(parsed["result"])
        except OverflowError:  # an integer of thousands of digits
            return None
    return float(text) if _NUMBER.fullmatch(text.strip()) else None


def _message(err) -> str:
    body = err.body if isinstance(err.body, dict) else {}
    return str((body.get("error") or body).get("message") or err.message)[:200]


# --- grading a whole evaluation ----------------------------------------------------------------------


def grade_all(graders: list[dict], answers: list[tuple[list[dict], str, str]], judge_url: str | None = None,
              say=None) -> list[dict]:
    """A grade row per grader per answer; answers are (prompt messages, reference, output);
    say(line) hears about a judge that times out."""
    spaces = [namespaces(prompt + [{"role": "assistant", "content": ref}], ref, out) for prompt, ref, out in answers]
    judge = Judge(judge_url, say) if any(g["type"] == "score_model" for g in graders) else None
    rows = []
    for grader in graders:
        with ThreadPoolExecutor(JUDGE_THREADS if judge else 1) as pool:
            grades = list(pool.map(partial(_one, grader, judge=judge), spaces))
        threshold = grader.get("pass_threshold")
        rows += [{"example": i, "grader": grader["name"], "type": grader["type"], "score": g.score,
                  "passed": None if threshold is None else int(g.score >= threshold), "error": g.error}
                 for i, g in enumerate(grades)]
    return rows


def _one(grader: dict, ns: dict, judge: Judge | None) -> Grade:
    """One grader's grade of one answer; a missing template variable is a 0 with the reason."""
    try:
        if grader["type"] == "score_model":
            return score_model(grader, ns, judge)
        grade = (string_check if grader["type"] == "string_check" else text_similarity)(grader, ns)
    except MissingVariable as missing:
        return Grade(0.0, f"invalid_variable_error: {missing}")
    return grade if math.isfinite(grade.score) else Grade(0.0, "the metric is undefined for this answer")
