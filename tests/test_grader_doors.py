"""`ftm eval --graders` against a hostile judge and hostile graders files: a judge that answers
HTML, bytes, `null`, no choices, a NaN score, or nothing at all gives a grade of 0 with the reason
recorded (never a traceback); a judge that drops every connection fails in one line with the
answers already stored; a graders file that is a folder, a FIFO, too deep, or holds NaN or a bad
range is refused before any answer is generated; a template of any size is read in linear time."""

from __future__ import annotations

import json
import os
import sqlite3
import time
from http.server import BaseHTTPRequestHandler

import pytest
from conftest import ftm, http_server
from test_across import capitals
from test_eval_graders import heldout, write

GOOD = json.dumps({"steps": [], "result": 1})
# What the judge answers, by the model a grader names: (status, content type, body).
ANSWERS = {
    "good": (200, "application/json", json.dumps({"choices": [{"message": {"role": "assistant", "content": GOOD}}]})),
    "html": (200, "text/html", "<html><body>Bad gateway</body></html>"),
    "bytes": (200, "application/octet-stream", b"\xff\xfe\x00\x81 not text"),
    "null": (200, "application/json", "null"),
    "list": (200, "application/json", "[1, 2]"),
    "no_choices": (200, "application/json", json.dumps({"choices": []})),
    "null_content": (200, "application/json", json.dumps({"choices": [{"message": {"content": None}}]})),
    "nan": (200, "application/json", json.dumps({"choices": [{"message": {"content": '{"steps": [], "result": NaN}'}}]})),
    "huge": (200, "application/json", json.dumps({"choices": [{"message": {"content": '{"result": ' + "9" * 5000 + "}"}}]})),
}


class HostileJudge(BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        model = body["model"]
        if model == "stall":
            time.sleep(5)  # longer than the judge timeout the test sets
            return
        if model == "drop":
            self.close_connection = True
            return
        status, kind, text = ANSWERS[model]
        data = text if isinstance(text, bytes) else text.encode()
        self.send_response(status)
        self.send_header("content-type", kind)
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def judge():
    with http_server(HostileJudge) as server:
        yield f"{server.url}/v1"


def scorer(model: str) -> dict:
    return {"type": "score_model", "name": model, "model": model,
            "input": [{"role": "user", "content": "Grade {{sample.output_text}} against {{item.reference}}"}]}


def evaluated(ftm_home) -> tuple[int, int]:
    db = sqlite3.connect(ftm_home / "ftm.db")
    return tuple(db.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in ("evaluations", "generations"))


def test_a_judge_that_answers_anything_but_a_score_gives_zero_with_the_reason(ftm_home, tmp_path, judge):
    data = capitals(tmp_path)
    run = ftm("submit", data, "-b", "fake", "--wait", "--json").json()
    graders = write(tmp_path, [scorer(m) for m in [*ANSWERS, "stall"]])
    result = ftm("eval", run["id"], "--data", heldout(tmp_path, data, 2), "--graders", graders, "--judge-url", judge,
                 "--json", env={"FTM_JUDGE_TIMEOUT": "0.5", "OPENAI_API_KEY": "sk-judge"}, timeout=120)
    assert result.code == 0 and "Traceback" not in result.err, result
    grades = {g["grader"]: g for g in result.json()[0]["grades"]}
    assert grades["good"]["mean"] == 1.0 and grades["good"]["errors"] == 0
    for bad in [*ANSWERS, "stall"]:
        if bad != "good":
            assert (grades[bad]["mean"], grades[bad]["errors"]) == (0.0, 2), bad
    errors = dict(sqlite3.connect(ftm_home / "ftm.db").execute("SELECT grader, error FROM grades").fetchall())
    assert errors["html"].startswith("model_grader_parse_error: the judge's answer is not JSON (text/html")
    assert "no message content" in errors["no_choices"] and "no message content" in errors["null"]
    assert errors["nan"].startswith("model_grader_parse_error: no score")
    assert errors["stall"] == "model_grader_timeout: no answer in 0.5 s"
    assert "the judge stall gave no answer in 0.5 s" in result.err  # said while it happens, not only stored


def test_a_judge_that_drops_every_connection_fails_in_one_line_with_the_answers_kept(ftm_home, tmp_path, judge):
    data = capitals(tmp_path)
    run = ftm("submit", data, "-b", "fake", "--wait", "--json").json()
    result = ftm("eval", run["id"], "--data", heldout(tmp_path, data), "--graders", write(tmp_path, [scorer("drop")]),
                 "--judge-url", judge, env={"OPENAI_API_KEY": "sk-judge"}, timeout=120)
    assert result.code == 1 and result.err.startswith("Error: ") and len(result.err.strip().splitlines()) == 1, result
    assert evaluated(ftm_home) == (1, 3)


def test_a_template_of_any_size_is_read_in_linear_time(ftm_home, tmp_path):
    data = capitals(tmp_path)
    run = ftm("submit", data, "-b", "fake", "--wait", "--json").json()
    hostile = "{{" * 50_000 + " " * 100_000  # 200 KB: no closing braces, a long run of spaces
    graders = write(tmp_path, [{"type": "string_check", "name": "big", "operation": "eq",
                                "input": hostile, "reference": "{{ item.reference }}" + hostile}])
    started = time.monotonic()
    result = ftm("eval", run["id"], "--data", heldout(tmp_path, data), "--graders", graders, "--json", timeout=60)
    assert result.code == 0, result
    assert time.monotonic() - started < 30
    assert result.json()[0]["grades"][0]["mean"] == 0.0


def bad_files(tmp_path) -> dict:
    folder = tmp_path / "a-folder"
    folder.mkdir()
    fifo = tmp_path / "a-fifo"
    os.mkfifo(fifo)
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 200_000 + "]" * 200_000)
    threshold = {"type": "string_check", "name": "s", "operation": "eq", "input": "a", "reference": "b"}
    raw = {name: tmp_path / f"{name}.json" for name in ("nan", "inf", "overflow")}
    raw["nan"].write_text(json.dumps(threshold)[:-1] + ', "pass_threshold": NaN}')
    raw["inf"].write_text(json.dumps(threshold)[:-1] + ', "pass_threshold": -Infinity}')
    raw["overflow"].write_text(json.dumps(threshold)[:-1] + ', "pass_threshold": 1e999}')
    ranges = {f"range{i}": write(tmp_path, [{**scorer("good"), "range": span}], f"range{i}.json")
              for i, span in enumerate([[1, 0], [0], [0, 1, 2], ["a", 1], [0, 0], 5])}
    return {"a folder": folder, "not a regular file": fifo, "nested too deeply": deep,
            "NaN is not a number": raw["nan"], "-Infinity is not a number": raw["inf"],
            "pass_threshold is inf": raw["overflow"], **{f"{k}: range": v for k, v in ranges.items()}}


def test_a_hostile_graders_file_is_refused_before_any_answer_is_generated(ftm_home, tmp_path):
    data = capitals(tmp_path)
    run = ftm("submit", data, "-b", "fake", "--wait", "--json").json()
    for needle, path in bad_files(tmp_path).items():
        result = ftm("eval", run["id"], "--data", heldout(tmp_path, data), "--graders", path, timeout=60)
        assert result.code == 1 and result.err.startswith("Error: "), (needle, result)
        assert len(result.err.strip().splitlines()) == 1 and needle.split(": ")[-1] in result.err, (needle, result)
    assert evaluated(ftm_home) == (0, 0)
