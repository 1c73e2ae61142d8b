"""A hostile provider's metrics events: values that are not numbers, NaN and infinity, numbers too big
for SQLite, ten thousand extra keys, names carrying SQL or markup, steps that are not steps. Each is
kept safely or skipped; sync and import go on; nothing reaches the dashboard as markup."""

from __future__ import annotations

import json
import re
import sqlite3
import time

import pytest
from conftest import ftm
from sdk_backends import aimed, preferences, served

from ftmanager import figures
from ftmanager.ledger import ledger
from ftmanager.standin import standin
from ftmanager.standin.history import seed

KEY = "sk-hostile-" + "m3t" * 8
server = served(standin, speed=40)
SQL = "x'); DROP TABLE runs; --"
HTML = "<img src=x onerror=alert(1)>"
TRAIN = {"name": "train", "lines": [{"messages": [{"role": "user", "content": f"q{i}"},
                                                 {"role": "assistant", "content": f"a{i}"}]} for i in range(10)]}
HOSTILE = [
    {"step": 1, "train_loss": 0.5, "rewards/margins": 0.25, "text": "abc", "nested": {"a": 1}, "flag": True,
     "list": [1, 2], SQL: 1.0, HTML: 2.0, "nan": float("nan"), "inf": float("inf"), "big": 1e308,
     "huge": 10 ** 400, "good_one": 3.0},
    {"step": 2, "train_loss": "not a loss", **{f"k{i:05d}": float(i) for i in range(10_000)}},
    {"step": "three", "rewards/margins": 99.5},
    {"step": 1e30, "rewards/margins": 99.5},
    {"step": float("nan"), "rewards/margins": 99.5},
    {"step": 4.5, "rewards/margins": 99.5},
    {"rewards/margins": 99.5},
]


@pytest.fixture
def env(server, monkeypatch, ftm_home):
    server.state.jobs.clear()
    return aimed(server, monkeypatch, {"OPENAI_BASE_URL": server.url, "OPENAI_API_KEY": KEY},
                 unset=("OPENAI_ORG_ID", "OPENAI_PROJECT_ID", "FTM_POLL_SCALE"))


def send(job, at: float) -> None:
    for data in HOSTILE:
        job.emit("Step: hostile", at, type="metrics", data=data)
    job.emit("Step: not even an object", at, type="metrics", data=None)


def assert_kept_safely(run_id: str) -> None:
    """What a hostile job left in the ledger: its good figures, the first 64 extra names of a step,
    none of the rest; the tables intact; the dashboard's curves and summary carry only safe names."""
    from ftmanager.ui import api

    book = ledger()
    rows = {m["step"]: m for m in book.metrics(run_id)}
    assert (rows[1]["rewards/margins"], rows[1]["good_one"], rows[1]["big"]) == (0.25, 3.0, 1e308)
    for name in ("text", "nested", "flag", "list", SQL, HTML, "nan", "inf", "huge"):
        assert name not in rows[1]
    assert sum(k.startswith("k") for k in rows[2]) == figures.PER_STEP and rows[2]["k00063"] == 63.0
    assert isinstance(rows[2]["train_loss"], (float, type(None)))  # the step's own loss, or none: not the text
    assert all(v != 99.5 for m in book.metrics(run_id) for v in m.values() if isinstance(v, float))
    conn = sqlite3.connect(book.path)
    assert conn.execute("SELECT count(*) FROM runs").fetchone()[0] >= 1
    names = [n for (n,) in conn.execute("SELECT DISTINCT name FROM metric_values WHERE run_id = ?", [run_id])]
    assert all(figures.is_name(n) for n in names) and not any("<" in n or "'" in n for n in names)
    curves = api.curves(run_id)
    assert len(curves["series"]) <= len(book.metric_summary(run_id)) and all(
        re.fullmatch(r"[A-Za-z0-9_./:-]+", n) for n in curves["series"])
    assert "<" not in json.dumps(api.run_detail(run_id)["summary"])
    shown = ftm("show", run_id)
    assert shown.code == 0 and "rewards/margins" in shown.out and HTML not in shown.out


def test_an_import_of_a_hostile_job_keeps_what_is_safe_and_the_rest_of_the_account(env):
    made = seed(env, {"files": [TRAIN],
                      "jobs": [{"training_file": "train", "method": "dpo", "events": 6}, {"training_file": "train"}]})
    send(env.state.jobs[made[0]], env.state.jobs[made[0]].created_at + 15)
    done = ftm("import", "openai", "--json")
    assert done.code == 0, done
    assert len(ledger().runs()) == 2  # the job after the hostile one came in too
    assert_kept_safely(next(r["id"] for r in ledger().runs() if r["provider_job_id"] == made[0]))


def test_sync_of_a_live_job_goes_on_through_hostile_metrics(env, tmp_path, monkeypatch):
    monkeypatch.setenv("FTM_POLL_SCALE", "0.05")
    started = ftm("submit", preferences(tmp_path / "prefs.jsonl"), "-b", "openai", "--method", "dpo", "--json")
    assert started.code == 0, started
    run = started.json()
    send(env.state.jobs[run["provider_job_id"]], time.time())
    watched = ftm("watch", run["id"], "--json")
    assert watched.code == 0 and watched.json()["status"] == "succeeded", watched
    assert_kept_safely(run["id"])


def test_a_metric_name_no_figure_can_have_is_one_line_and_draws_nothing(env, tmp_path):
    from ftmanager import adopting, comparing
    from ftmanager.errors import InvalidInput

    seed(env, {"files": [TRAIN], "jobs": [{"training_file": "train"}] * 2})
    adopting.import_history("openai")
    ids = [r["id"] for r in ledger().runs()]
    out = ftm("compare", *ids, "--plot", tmp_path / "x.png", "--metric", SQL)
    assert out.code == 1 and out.err.startswith("Error: ") and len(out.err.strip().splitlines()) == 1, out
    for metric in (HTML, "", "a" * 65):
        with pytest.raises(InvalidInput):
            comparing.plot(ids, tmp_path / "x.png", metric=metric)
    assert not (tmp_path / "x.png").exists() and len(ledger().runs()) == 2
