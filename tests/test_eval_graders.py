"""Graders in OpenAI's shapes in `ftm eval`: each grade stored in the ledger and shown by `ftm compare`;
score_model judged by a real OpenAI-compatible server on loopback through the openai SDK."""

from __future__ import annotations

import json
import sqlite3

import pytest

from conftest import ftm
from test_across import capitals

STRING_AND_SIMILARITY = [
    {"type": "string_check", "name": "capital", "operation": "ilike",
     "input": "{{ sample.output_text }}", "reference": "{{ item.reference_json.capital }}"},
    {"type": "string_check", "name": "country_field", "operation": "eq",
     "input": "{{sample.output_json.country}}", "reference": "{{item.reference_json.country}}"},
    {"type": "text_similarity", "name": "fuzzy", "evaluation_metric": "fuzzy_match", "pass_threshold": 0.9,
     "input": "{{sample.output_text}}", "reference": "{{item.reference}}"},
    {"type": "text_similarity", "name": "rouge2", "evaluation_metric": "rouge_2",
     "input": "{{sample.output_text}}", "reference": "{{item.reference}}"},
]


def heldout(tmp_path, data, n=3):
    path = tmp_path / "heldout.jsonl"
    path.write_text("".join(data.read_text().splitlines(keepends=True)[:n]))
    return path


def write(tmp_path, graders, name="graders.json"):
    path = tmp_path / name
    path.write_text(json.dumps(graders))
    return path


def test_string_check_and_text_similarity_grades_are_stored_and_compared(ftm_home, tmp_path):
    data = capitals(tmp_path)
    first = ftm("submit", data, "-b", "fake", "--wait", "--json").json()
    second = ftm("submit", data, "-b", "fake", "--wait", "--json").json()
    graders = write(tmp_path, STRING_AND_SIMILARITY)
    result = ftm("eval", first["id"], "--data", heldout(tmp_path, data), "--baseline", "--graders", graders, "--json")
    assert result.code == 0, result
    tuned, base = result.json()
    means = {g["grader"]: g for g in tuned["grades"]}
    assert {k: v["mean"] for k, v in means.items()} == {"capital": 1.0, "country_field": 1.0, "fuzzy": 1.0, "rouge2": 1.0}
    assert means["fuzzy"]["pass_rate"] == 1.0 and means["capital"]["pass_rate"] is None
    base_grades = {g["grader"]: g for g in base["grades"]}
    # "I do not know." is not JSON: sample.output_json is undefined, which OpenAI scores 0 with an error
    assert base_grades["country_field"]["mean"] == 0.0 and base_grades["country_field"]["errors"] == 3
    assert base_grades["capital"]["mean"] == 0.0 and base_grades["capital"]["errors"] == 0
    assert base["generations"][0]["grades"]["fuzzy"] < 0.5
    rows = sqlite3.connect(ftm_home / "ftm.db").execute(
        "SELECT grader, example, score, passed, error FROM grades WHERE evaluation_id = ? ORDER BY grader, example",
        [base["id"]]).fetchall()
    assert len(rows) == 12 and rows[0][:4] == ("capital", 0, 0.0, None)
    assert next(r[4] for r in rows if r[0] == "country_field").startswith("invalid_variable_error")
    compared = ftm("compare", first["id"], second["id"], "--json").json()["runs"]
    assert compared[0]["grade.capital"] == 1.0 and compared[0]["grade.fuzzy.pass_rate"] == 1.0
    assert "grade.capital" not in compared[1]
    text = ftm("compare", first["id"], second["id"]).out
    assert "grade.country_field" in text and "eval.bleu" in text
    text = ftm("eval", first["id"], "--data", heldout(tmp_path, data, 1), "--graders", graders).out
    assert "country_field" in text.splitlines()[0] and "fuzzy: mean grade of text_similarity fuzzy_match" in text


def test_a_bad_graders_file_is_one_line_and_nothing_is_evaluated(ftm_home, tmp_path):
    data = capitals(tmp_path)
    run = ftm("submit", data, "-b", "fake", "--wait", "--json").json()
    cases = {
        "operation": ([{**STRING_AND_SIMILARITY[0], "operation": "contains"}], "operation: Input should be"),
        "type": ([{"type": "python", "name": "p", "source": "def grade(s, i): return 1"}], "has type 'python'"),
        "cosine": ([{**STRING_AND_SIMILARITY[2], "evaluation_metric": "cosine"}], "text-embedding-3-large"),
        "twice": ([STRING_AND_SIMILARITY[0], STRING_AND_SIMILARITY[0]], "share a name"),
        "typo": ([{**STRING_AND_SIMILARITY[0], "refrence": "x"}], "unknown fields: refrence"),
    }
    for name, (graders, message) in cases.items():
        result = ftm("eval", run["id"], "--data", heldout(tmp_path, data), "--graders", write(tmp_path, graders, f"{name}.json"))
        assert result.code == 1 and result.err.startswith("Error: ") and message in result.err, (name, result)
        assert len(result.err.strip().splitlines()) == 1
    assert sqlite3.connect(ftm_home / "ftm.db").execute("SELECT count(*) FROM evaluations").fetchone()[0] == 0


JUDGE = [{"role": "system", "content": "Grade the answer against the reference. Reply with JSON."},
         {"role": "user", "content": [{"type": "input_text",
                                       "text": "Reference: {{item.reference}}\nAnswer: {{sample.output_text}}"}]}]


def judge_training_file(tmp_path, references, wrong="I do not know."):
    """What the stand-in's judge model answers: its training file's reply to the same user message."""
    rows = []
    for ref in references:
        for answer, score in ((ref, 1), (wrong, 0)):
            rows.append({"messages": [JUDGE[0], {"role": "user", "content": f"Reference: {ref}\nAnswer: {answer}"},
                                      {"role": "assistant", "content": json.dumps({"steps": [], "result": score})}]})
    rows += [{"messages": [{"role": "user", "content": f"filler {i}"}, {"role": "assistant", "content": "1"}]}
             for i in range(10)]
    path = tmp_path / "judge.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_score_model_asks_an_openai_compatible_judge_over_http(ftm_home, tmp_path, monkeypatch):
    from ftmanager.standin import standin

    data = capitals(tmp_path)
    run = ftm("submit", data, "-b", "fake", "--wait", "--json").json()
    held = heldout(tmp_path, data)
    references = [json.loads(line)["messages"][-1]["content"] for line in held.read_text().splitlines()]
    with standin(speed=50) as server:
        monkeypatch.setenv("OPENAI_BASE_URL", server.url)
        monkeypatch.setenv("OPENAI_API_KEY", "sk-test-judge")
        monkeypatch.setenv("FTM_POLL_SCALE", "0.05")
        judge = ftm("submit", judge_training_file(tmp_path, references), "-b", "openai",
                    "-m", "gpt-4o-mini-2024-07-18", "--wait", "--json").json()["result_model"]
        graders = write(tmp_path, [
            {"type": "score_model", "name": "judge", "model": judge, "input": JUDGE, "pass_threshold": 0.5,
             "sampling_params": {"temperature": 0, "seed": 1, "max_completions_tokens": 50}},
            {"type": "score_model", "name": "untuned_judge", "model": "gpt-4o-mini-2024-07-18", "input": JUDGE},
        ])
        monkeypatch.delenv("OPENAI_BASE_URL")  # the judge's address comes from --judge-url alone
        result = ftm("eval", run["id"], "--data", held, "--baseline", "--graders", graders,
                     "--judge-url", server.url, "--json")
    assert result.code == 0, result
    tuned, base = ({g["grader"]: g for g in r["grades"]} for r in result.json())
    assert (tuned["judge"]["mean"], tuned["judge"]["pass_rate"]) == (1.0, 1.0)
    assert (base["judge"]["mean"], base["judge"]["pass_rate"]) == (0.0, 0.0)
    # the stand-in's untuned model says it was not fine-tuned: no score in that, recorded as such
    assert tuned["untuned_judge"]["errors"] == 3 and tuned["untuned_judge"]["mean"] == 0.0
    error = sqlite3.connect(ftm_home / "ftm.db").execute(
        "SELECT error FROM grades WHERE grader = 'untuned_judge' LIMIT 1").fetchone()[0]
    assert error.startswith("model_grader_parse_error")
    assert "sk-test-judge" not in (ftm_home / "ftm.db").read_bytes().decode("utf-8", "replace")


def test_an_unreachable_judge_is_one_line_and_the_answers_are_kept(ftm_home, tmp_path):
    import socket

    data = capitals(tmp_path)
    run = ftm("submit", data, "-b", "fake", "--wait", "--json").json()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again: nothing listens there
    graders = write(tmp_path, [{"type": "score_model", "name": "judge", "model": "m", "input": JUDGE}])
    result = ftm("eval", run["id"], "--data", heldout(tmp_path, data), "--graders", graders,
                 "--judge-url", f"http://127.0.0.1:{port}/v1", env={"OPENAI_API_KEY": "sk-x"}, timeout=120)
    assert result.code == 1 and "cannot be reached" in result.err and len(result.err.strip().splitlines()) == 1
    db = sqlite3.connect(ftm_home / "ftm.db")  # the answers were stored before the judge was asked
    assert db.execute("SELECT count(*) FROM generations").fetchone()[0] == 3


@pytest.mark.parametrize("metric,given,reference,expected", [
    ("bleu", "the cat sat on the mat", "the cat sat on the mat", 1.0),
    ("gleu", "a b c d", "a b c d", 1.0),
    ("gleu", "a b", "c d", 0.0),
    ("rouge_1", "the cat", "the dog", 0.5),
    ("rouge_l", "a b c d", "a c b d", 0.75),
    ("fuzzy_match", "abcd", "abce", 0.75),
])
def test_text_similarity_metrics_match_hand_computed_values(metric, given, reference, expected):
    from ftmanager import grading

    ns = grading.namespaces([], reference, given)
    grader = {"type": "text_similarity", "name": "t", "evaluation_metric": metric,
              "input": "{{sample.output_text}}", "reference": "{{item.reference}}"}
    assert grading.text_similarity(grader, ns).score == pytest.approx(expected)


def test_string_check_operations_follow_openai():
    from ftmanager import grading

    ns = grading.namespaces([], "Paris", "The capital is paris")
    check = {"type": "string_check", "name": "s", "input": "{{sample.output_text}}", "reference": "{{item.reference}}"}
    got = {op: grading.string_check({**check, "operation": op}, ns).score for op in ("eq", "ne", "like", "ilike")}
    assert got == {"eq": 0.0, "ne": 1.0, "like": 0.0, "ilike": 1.0}


def test_the_demo_records_are_valid_held_out_and_graded_as_the_demo_says(ftm_home):
    from conftest import EXAMPLES
    from ftmanager import grading

    countries = {}
    for name in ("records.jsonl", "records_heldout.jsonl"):
        rows = [json.loads(line)["messages"] for line in (EXAMPLES / name).read_text().splitlines()]
        countries[name] = {json.loads(m[-1]["content"])["country"] for m in rows}
        assert all(json.loads(m[-1]["content"])["capital"] in m[1]["content"] for m in rows)  # the fact is given
    assert not countries["records.jsonl"] & countries["records_heldout.jsonl"]
    assert ftm("datasets", "validate", EXAMPLES / "records.jsonl").code == 0
    graders = grading.load(EXAMPLES / "records_graders.json")
    record = '{"country": "Ghana", "capital": "Accra"}'
    answers = [([], record, record), ([], record, "The capital of Ghana is Accra.")]
    grades = {(g["example"], g["grader"]): g["score"] for g in grading.grade_all(graders, answers)}
    assert grades == {(0, "country"): 1.0, (0, "capital"): 1.0, (0, "mentions"): 1.0,
                      (1, "country"): 0.0, (1, "capital"): 0.0, (1, "mentions"): 1.0}
