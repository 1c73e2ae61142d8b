"""`ftm eval --judge MODEL` on preference pairs: every model's answers (the tuned runs' and their base
model's) scored by a real judge over HTTP on 127.0.0.1 against each pair's chosen answer; a run
wins a prompt where its score beats the base's, ties count half; the win rate lands in the ledger's
grades, `ftm eval`'s table and `ftm compare`."""

from __future__ import annotations

import json
import re
import sqlite3
import time
from http.server import BaseHTTPRequestHandler

import pytest

from conftest import ftm, http_server

PAIRS = [("What is the capital of France?", "Paris is the capital of France.", "London."),
         ("What is 2 plus 2?", "Two plus two is four.", "Five."),
         ("Name a colour of the sky.", "The sky is blue.", "Green cheese."),
         ("Who wrote Hamlet?", "Shakespeare wrote Hamlet.", "Dickens.")]


def pair(question: str, chosen: str, rejected: str) -> dict:
    return {"input": {"messages": [{"role": "user", "content": question}]},
            "preferred_output": [{"role": "assistant", "content": chosen}],
            "non_preferred_output": [{"role": "assistant", "content": rejected}]}


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def prefs(tmp_path, rows=PAIRS):
    return write_jsonl(tmp_path / "prefs.jsonl", [pair(*p) for p in rows])


def trained_on(tmp_path, name: str, answers: dict[str, str]) -> str:
    """A fake run that answers these questions so (and "I do not know." to the rest, as its base does)."""
    rows = [{"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]}
            for q, a in answers.items()]
    rows += [{"messages": [{"role": "user", "content": f"filler {i}"}, {"role": "assistant", "content": "x"}]}
             for i in range(10)]
    run = ftm("submit", write_jsonl(tmp_path / f"{name}.jsonl", rows), "-b", "fake", "--wait", "--json")
    assert run.code == 0, run
    return run.json()["id"]


# --- a judge that scores by a visible rule ----------------------------------------------------------

def tagged(text: str, tag: str) -> str | None:
    found = re.search(f"<{tag}>\n(.*)\n</{tag}>", text, re.S)
    return found.group(1) if found else None


def rule(preferred: str, answer: str) -> int:
    """10 for the preferred answer itself, 5 for one that shares a word with it, else 1."""
    if answer == preferred:
        return 10
    return 5 if set(re.findall(r"\w+", answer.lower())) & set(re.findall(r"\w+", preferred.lower())) else 1


def reply(content: str) -> tuple[int, str]:
    return 200, json.dumps({"id": "c", "object": "chat.completion", "created": 0, "model": "judge",
                            "choices": [{"index": 0, "finish_reason": "stop",
                                         "message": {"role": "assistant", "content": content}}]})


class Judge(BaseHTTPRequestHandler):
    """Chat completions; what it does is chosen by the model a request names (a hostile one in the doors)."""
    seen: list = []

    def do_POST(self):  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        user = body["messages"][-1]["content"]
        preferred, answer = tagged(user, "preferred_answer"), tagged(user, "answer")
        type(self).seen.append((body["model"], preferred, answer))
        if body["model"] == "stall":
            time.sleep(3)  # longer than the judge timeout the doors test sets
            return
        status, text = BEHAVIOURS[body["model"]](preferred, answer, user)
        data = text.encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


BEHAVIOURS = {
    "fair": lambda preferred, answer, user: reply(json.dumps({"steps": [], "result": rule(preferred, answer)})),
}


@pytest.fixture
def judge():
    Judge.seen = []
    with http_server(Judge) as server:
        yield f"{server.url}/v1"


def win_rates(result) -> list:
    return [{g["grader"]: g["mean"] for g in r["grades"]}.get("win_rate") for r in result.json()]


# --- tests --------------------------------------------------------------------------------------------


def test_a_run_that_gives_the_chosen_answers_wins_and_ties_count_half(ftm_home, tmp_path, judge):
    matching = trained_on(tmp_path, "matching", {q: c for q, c, _ in PAIRS})
    half = trained_on(tmp_path, "half", {q: c for q, c, _ in PAIRS[:2]})  # the other two: "I do not know."
    result = ftm("eval", matching, half, "--data", prefs(tmp_path), "--judge", "fair", "--judge-url", judge,
                 "--json", env={"OPENAI_API_KEY": "sk-judge"})
    assert result.code == 0, result
    assert "the base model" in result.err  # the base's answers are the reference, so it is evaluated too
    assert win_rates(result) == [1.0, 0.75, None]  # 4 wins; 2 wins and 2 ties; the base is the reference
    base = result.json()[2]
    assert {g["grader"]: g["mean"] for g in base["grades"]}["judge_score"] == 1.0  # "I do not know." scored 1
    # the judge saw each pair's chosen answer as the reference, and each model's answer alone
    expected = {(c, c) for _, c, _ in PAIRS} | {(c, "I do not know.") for _, c, _ in PAIRS}
    assert {(p, a) for _, p, a in Judge.seen} >= expected
    assert len(Judge.seen) == 12  # 4 prompts x 3 models, one answer per request
    db = sqlite3.connect(ftm_home / "ftm.db")
    rows = db.execute("SELECT example, score, error FROM grades WHERE grader = 'win_rate' AND evaluation_id = ? "
                      "ORDER BY example", [result.json()[1]["id"]]).fetchall()
    assert rows == [(0, 1.0, None), (1, 1.0, None), (2, 0.5, None), (3, 0.5, None)]


def test_the_win_rate_is_a_column_of_the_eval_table_and_of_compare(ftm_home, tmp_path, judge):
    matching = trained_on(tmp_path, "matching", {q: c for q, c, _ in PAIRS})
    half = trained_on(tmp_path, "half", {q: c for q, c, _ in PAIRS[:2]})
    shown = ftm("eval", matching, half, "--data", prefs(tmp_path), "--judge", "fair", "--judge-url", judge,
                env={"OPENAI_API_KEY": "sk-judge"})
    assert shown.code == 0, shown
    header, first, second, base = shown.out.splitlines()[:4]
    column = header.split().index("win_rate")
    assert (first.split()[column], second.split()[column], base.split()[column]) == ("1", "0.75", "-")
    assert "win_rate: share of prompts where the judge scored" in shown.out and "ties half" in shown.out
    compared = ftm("compare", matching, half, "--json").json()["runs"]
    assert [c["grade.win_rate"] for c in compared] == [1.0, 0.75]


def test_without_a_judge_the_win_rate_is_skipped_and_the_output_says_how_to_get_it(ftm_home, tmp_path):
    matching = trained_on(tmp_path, "matching", {q: c for q, c, _ in PAIRS})
    result = ftm("eval", matching, "--data", prefs(tmp_path), "--json")
    assert result.code == 0, result
    assert "win rate skipped: give --judge MODEL" in result.err
    assert win_rates(result) == [None] and len(result.json()) == 1  # no base model asked for, none evaluated


def judge_training_file(tmp_path) -> str:
    """What the stand-in's judge model answers: a 10 for each chosen answer, a 1 for "I do not know."
    (the stand-in replies with its training file's answer to the same last user message)."""
    from ftmanager.evaluation import JUDGE_PROMPT
    from ftmanager.grading import namespaces, render

    rows = []
    for question, chosen, _ in PAIRS:
        messages = [{"role": "user", "content": question}, {"role": "assistant", "content": chosen}]
        for answer, score in ((chosen, 10), ("I do not know.", 1)):
            asked = render(JUDGE_PROMPT[1]["content"], namespaces(messages, chosen, answer))
            rows.append({"messages": [{"role": "user", "content": asked},
                                      {"role": "assistant", "content": json.dumps({"steps": [], "result": score})}]})
    return write_jsonl(tmp_path / "judge.jsonl", rows + [{"messages": [
        {"role": "user", "content": f"filler {i}"}, {"role": "assistant", "content": "1"}]} for i in range(2)])


def test_the_openai_stand_in_judges_the_default_prompt(ftm_home, tmp_path, monkeypatch):
    from ftmanager.standin import standin

    matching = trained_on(tmp_path, "matching", {q: c for q, c, _ in PAIRS})
    with standin(speed=50) as server:
        monkeypatch.setenv("OPENAI_API_KEY", "sk-test-judge")
        monkeypatch.setenv("FTM_POLL_SCALE", "0.05")
        judged = ftm("submit", judge_training_file(tmp_path), "-b", "openai", "-m", "gpt-4o-mini-2024-07-18",
                     "--wait", "--json", env={"OPENAI_BASE_URL": server.url})
        assert judged.code == 0, judged
        result = ftm("eval", matching, "--data", prefs(tmp_path), "--judge", judged.json()["result_model"],
                     "--judge-url", server.url, "--json")
    assert result.code == 0, result
    assert win_rates(result) == [1.0, None]
    assert [{g["grader"]: g["mean"] for g in r["grades"]}["judge_score"] for r in result.json()] == [10.0, 1.0]
