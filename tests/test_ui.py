"""`ftm ui` in a real browser (Debian's chromium through Playwright) over a ledger made by real runs:
a local run of a tiny Llama (with a validation split), fake-provider runs that succeed, fail and
run on, and an evaluation of them. Each test clicks through the pages a user would."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from conftest import ROOT
from fixtures_local import tiny_llama  # noqa: F401  (fixture)
from ui_browser import browser_session, home_env, require_browser, run_ftm, serving

require_browser()
pytest.importorskip("peft")

# The README's pictures are remade by these tests when FTM_UI_SCREENSHOTS=1 (then commit them);
# otherwise the screenshots are still taken, into a scratch folder, so a test run leaves the
# checkout as it found it.
SHOTS = ROOT / "docs" if os.environ.get("FTM_UI_SCREENSHOTS") == "1" else Path(tempfile.gettempdir()) / "ftm-ui-shots"
SCREENSHOT = SHOTS / "ui-runs.png"
GRADERS = [{"type": "string_check", "name": "exact", "operation": "eq",
            "input": "{{sample.output_text}}", "reference": "{{item.reference}}"},
           {"type": "text_similarity", "name": "fuzzy", "evaluation_metric": "fuzzy_match", "pass_threshold": 0.9,
            "input": "{{sample.output_text}}", "reference": "{{item.reference}}"}]
COMPARE_SHOT = SHOTS / "ui-compare.png"  # both shown in the README


def _chats(n: int, tag: str = "") -> list[dict]:
    return [{"messages": [{"role": "user", "content": f"What is {i} plus {i}?{tag}"},
                          {"role": "assistant", "content": f"It is {2 * i}."}]} for i in range(n)]


def _write(path, rows) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


@pytest.fixture(scope="module")
def book(tmp_path_factory, tiny_llama):  # noqa: F811
    """The ledger: one local run (curves with validation), three fake runs, an evaluation of two."""
    tmp = tmp_path_factory.mktemp("ui")
    env = home_env(tmp)
    data = _write(tmp / "train.jsonl", _chats(12))
    held = _write(tmp / "held.jsonl", _chats(3))
    local = subprocess.Popen([sys.executable, "-m", "ftmanager", "submit", data, "-b", "local", "--model", tiny_llama,
                              "--epochs", "2", "--batch-size", "4", "--no-quantize", "-p", "device=cpu", "--split", "0.25",
                              "--suffix", "tiny llama", "--wait", "--json"], env=env, stdout=subprocess.PIPE, text=True)
    two = json.loads(run_ftm(env, "submit", data, "-b", "fake", "--epochs", "2", "--suffix", "two", "--wait", "--json").stdout)
    three = json.loads(run_ftm(env, "submit", data, "-b", "fake", "--epochs", "3", "--suffix", "three", "--wait", "--json").stdout)
    subprocess.run([sys.executable, "-m", "ftmanager", "submit", data, "-b", "fake", "--model", "fake-fail", "--wait"],
                   env=env, capture_output=True)
    graders = tmp / "graders.json"
    graders.write_text(json.dumps(GRADERS))
    run_ftm(env, "eval", two["id"], three["id"], "--data", held, "--max-new-tokens", "8",  # while the local run trains
            "--graders", graders)
    out, _ = local.communicate(timeout=300)
    local_run = json.loads(out)
    assert local_run["status"] == "succeeded", out
    return {"env": env, "local": local_run["id"], "two": two["id"], "three": three["id"], "data": data}


@pytest.fixture(scope="module")
def site(book):
    with serving(book["env"], "--sync", "0.3") as (url, _):
        yield url


@pytest.fixture(scope="module")
def browser():
    with browser_session() as b:
        yield b


@pytest.fixture
def page(browser):
    page = browser.new_page()
    yield page
    assert page.problems == []
    page.context.close()


def _runs(env) -> list[dict]:
    return json.loads(run_ftm(env, "runs", "--json").stdout)


def test_the_runs_page_lists_filters_and_sorts_every_run(book, site, page):
    page.goto(site)
    rows = page.locator("#runs tbody tr")
    rows.first.wait_for()
    everything = _runs(book["env"])
    assert rows.count() == len(everything)
    assert page.locator("#total").inner_text().startswith(f"{len(everything)} runs")
    page.select_option("select[name=backend]", "local")
    page.wait_for_function("document.querySelectorAll('#runs tbody tr').length === 1")
    assert book["local"] in rows.first.inner_text() and "qlora" not in rows.first.inner_text()
    page.select_option("select[name=backend]", "")
    page.locator("th[data-sort=status]").click()
    page.wait_for_function("location.hash.includes('sort=status')")
    page.wait_for_function(f"document.querySelectorAll('#runs tbody tr').length === {len(everything)}")
    shown = [rows.nth(i).locator(".status").inner_text() for i in range(rows.count())]
    assert shown == sorted(shown, reverse=True)
    page.select_option("select[name=backend]", "")
    SCREENSHOT.parent.mkdir(exist_ok=True)
    page.goto(site + "#/runs")
    rows.first.wait_for()
    page.screenshot(path=str(SCREENSHOT))


def test_a_run_draws_every_metric_point_with_hover_and_zoom(book, site, page):
    shown = json.loads(run_ftm(book["env"], "show", book["local"], "--json").stdout)
    train = sum(m["train_loss"] is not None for m in shown["metrics"])
    valid = sum(m["valid_loss"] is not None for m in shown["metrics"])
    assert train and valid
    page.goto(f"{site}#/run/{book['local']}")
    loss = page.locator(".chart[data-title=Loss]")
    loss.locator("canvas").wait_for()
    assert loss.get_attribute("data-points") == f"train_loss={train};valid_loss={valid}"
    assert page.locator("#run-status").inner_text() == "succeeded"
    assert "tiny llama" in page.locator("main").inner_text()
    over = loss.locator(".u-over")
    box = over.bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    assert loss.locator(".u-legend .u-value").nth(1).inner_text() not in ("", "--")
    whole = page.evaluate("[plots[0].scales.x.min, plots[0].scales.x.max]")
    page.mouse.move(box["x"] + box["width"] * 0.2, box["y"] + box["height"] / 2)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.6, box["y"] + box["height"] / 2, steps=8)
    page.mouse.up()
    zoomed = page.evaluate("[plots[0].scales.x.min, plots[0].scales.x.max]")
    assert whole[0] < zoomed[0] < zoomed[1] < whole[1]
    page.select_option("select[name=by]", "epoch")
    page.wait_for_function("location.hash.includes('by=epoch')")
    page.locator(".chart[data-title=Loss] canvas").wait_for()
    assert "epoch" in page.locator(".chart[data-title=Loss]").inner_text()


def test_compare_highlights_the_setting_that_differs_and_sets_answers_side_by_side(book, site, page):
    page.goto(site)
    page.locator(f"input[data-choose={book['two']}]").check()
    page.locator(f"input[data-choose={book['three']}]").check()
    page.locator("#compare-chosen").click()
    page.locator("#compare").wait_for()
    differ = page.locator("#compare tr.differ")
    assert [differ.nth(i).get_attribute("data-field") for i in range(differ.count())] == ["hp.n_epochs"]
    for field in ("eval.token_f1", "grade.exact", "grade.fuzzy", "grade.fuzzy.pass_rate"):
        assert page.locator(f"#compare tr[data-field='{field}'] td").all_inner_texts()[1:] == ["1", "1"], field
    answers = page.locator("#answers tbody tr")
    assert answers.count() == 3
    assert answers.first.locator("td.answer").all_inner_texts() == ["It is 0.", "It is 0."]
    assert page.locator(".chart[data-title=Loss]").get_attribute("data-points") == (
        f"{book['two']} train_loss=3;{book['three']} train_loss=3")
    page.goto(f"{site}#/compare?ids={book['local']},{book['three']}")  # two backends: the README's picture
    page.locator(".chart[data-title=Loss] canvas").wait_for()
    assert page.locator("#compare tr.differ").count() > 1
    COMPARE_SHOT.parent.mkdir(exist_ok=True)
    page.screenshot(path=str(COMPARE_SHOT), full_page=True)


def test_a_run_shows_its_evaluation_with_every_generation_and_grade(book, site, page):
    page.goto(f"{site}#/run/{book['two']}")
    answers = page.locator("td.answer")
    answers.first.wait_for()
    assert answers.all_inner_texts() == ["It is 0.", "It is 2.", "It is 4."]
    text = page.locator("main").inner_text()
    assert text.count("exact: 1") == 3 and text.count("fuzzy: 1") == 3
    assert "fake:fakejob" in page.locator("main").inner_text()  # its served names


def test_live_status_changes_without_a_reload_when_a_run_ends(book, site, page):
    run = json.loads(run_ftm(book["env"], "submit", book["data"], "-b", "fake", "--model", "fake-slow", "--json").stdout)
    page.goto(site)
    row = page.locator(f"tr[data-run={run['id']}] .status")
    row.wait_for()
    page.evaluate("window.notReloaded = true")
    page.wait_for_function(f"document.querySelector('tr[data-run={run['id']}] .status').innerText === 'running'")
    run_ftm(book["env"], "cancel", run["id"])
    page.wait_for_function(f"document.querySelector('tr[data-run={run['id']}] .status').innerText === 'cancelled'")
    assert page.evaluate("window.notReloaded") is True


def test_a_running_run_s_curves_grow_in_place(book, site, page):
    run = json.loads(run_ftm(book["env"], "submit", book["data"], "-b", "fake", "--model", "fake-slow", "--json").stdout)
    page.goto(f"{site}#/run/{run['id']}")
    loss = page.locator(".chart[data-title=Loss] canvas")
    loss.wait_for()
    page.evaluate("window.notReloaded = true")
    before = page.locator(".chart[data-title=Loss]").get_attribute("data-points")
    page.wait_for_function("before => document.querySelector('.chart[data-title=Loss]').dataset.points !== before",
                           arg=before)
    assert page.evaluate("window.notReloaded") is True
    run_ftm(book["env"], "cancel", run["id"])
    page.wait_for_function("document.querySelector('#run-status')?.innerText === 'cancelled'")


def test_pause_resume_and_cancel_buttons_act_on_the_run(book, site, page):
    run = json.loads(run_ftm(book["env"], "submit", book["data"], "-b", "fake", "--model", "fake-slow", "--json").stdout)
    page.goto(f"{site}#/run/{run['id']}")
    page.locator("button[data-action=pause]").click()  # appears once the run is running
    page.wait_for_function("document.querySelector('#run-status')?.innerText === 'paused'")
    page.locator("button[data-action=resume]").click()
    page.locator("button[data-action=cancel]").click()
    page.wait_for_function("document.querySelector('#run-status')?.innerText === 'cancelled'")
    assert page.locator("button[data-action=cancel]").count() == page.locator("button[data-action=pause]").count() == 0
    assert _runs(book["env"])[0]["status"] == "cancelled"


def test_the_playground_answers_with_two_models_side_by_side(book, site, page):
    page.goto(site + "#/models")
    panels = page.locator("#panels .panel")
    panels.nth(1).wait_for()
    page.locator("#panels .panel select").nth(0).select_option(book["local"])
    page.locator("#panels .panel select").nth(1).select_option(book["two"])
    page.fill("#max-tokens", "6")
    page.fill("#prompt", "What is 1 plus 1?")
    start = time.monotonic()
    page.locator("#send").click()
    page.locator("#panels .panel").nth(0).locator(".answer").wait_for(timeout=60_000)
    page.locator("#panels .panel").nth(1).locator(".answer").wait_for()
    assert panels.nth(1).locator(".answer").inner_text() == "It is 2."
    assert "6 max tokens" in panels.nth(0).inner_text() and time.monotonic() - start < 60
    assert f"local:{book['local']}" in page.locator("main table").inner_text()


def test_a_dataset_shows_its_statistics_histogram_report_and_lineage(book, site, page):
    page.goto(site + "#/datasets")
    page.get_by_role("link", name="train", exact=True).click()
    page.locator("#histogram .bars").wait_for()
    assert page.locator("#histogram .bars div").count() == 20
    text = page.locator("main").inner_text()
    assert "few_examples" in text and "tokens p5 / p50 / p95" in text
    assert book["two"] in text and book["three"] in text and "train-train" in text and "train-valid" in text


def _pairs(path) -> str:
    return _write(path, [{"input": {"messages": [{"role": "user", "content": f"q{i}"}]},
                          "preferred_output": [{"role": "assistant", "content": "yes"}],
                          "non_preferred_output": [{"role": "assistant", "content": "no"}]} for i in range(10)])


def test_a_dpo_run_charts_its_reward_margins_and_accuracy_beside_the_loss(book, site, page, tmp_path):
    data = _pairs(tmp_path / "pairs.jsonl")
    run = json.loads(run_ftm(book["env"], "submit", data, "-b", "fake", "--method", "dpo", "--wait", "--json").stdout)
    page.goto(f"{site}#/run/{run['id']}")
    page.locator(".chart[data-title='Reward margins'] canvas").wait_for()
    titles = page.locator(".chart").evaluate_all("charts => charts.map((c) => c.dataset.title)")
    assert titles == ["Loss", "Accuracy", "Reward margins", "Reward accuracy"]
    assert page.locator(".chart[data-title='Reward margins']").get_attribute("data-points") == "rewards/margins=3"
    assert page.locator(".chart[data-title='Reward accuracy']").get_attribute("data-points") == "rewards/accuracies=3"
    page.goto(f"{site}#/run/{book['two']}")  # a supervised run: no reward charts
    page.locator(".chart[data-title=Loss] canvas").wait_for()
    assert page.locator(".chart").count() == 2


def test_a_chain_links_both_ways_says_what_a_queued_link_waits_for_and_dpo_filters(book, site, page, tmp_path):
    env, sft = book["env"], book["two"]
    pairs = _pairs(tmp_path / "pairs.jsonl")
    dpo = json.loads(run_ftm(env, "submit", pairs, "-b", "fake", "--method", "dpo", "-m", sft, "--wait", "--json").stdout)
    slow = json.loads(run_ftm(env, "submit", book["data"], "-b", "fake", "--model", "fake-slow", "--json").stdout)
    link = json.loads(run_ftm(env, "submit", pairs, "-b", "fake", "--method", "dpo", "--wait", "--json").stdout)
    # Only a chain re-run onto another backend records a waiting link, and the fake plugin has one
    # backend with DPO: the ledger is written as such a re-run leaves it, on a run that never ends.
    with sqlite3.connect(Path(env["FTM_HOME"]) / "ftm.db") as db:
        db.execute("UPDATE runs SET status = 'queued', provider_job_id = NULL, base_run_id = ? WHERE id = ?",
                   [slow["id"], link["id"]])
    page.goto(f"{site}#/run/{dpo['id']}")
    page.locator("#on-top-of a").wait_for()
    assert page.locator("#on-top-of").inner_text() == f"{sft} (SFT)"
    assert page.locator("#waiting-for").count() == 0 and "DPO" in page.locator("main").inner_text()
    page.locator("#on-top-of a").click()
    page.wait_for_function("arg => document.querySelector('#run-id')?.textContent === arg", arg=sft)
    assert page.locator("#built-on").inner_text().strip() == f"{dpo['id']} (DPO)"
    page.goto(f"{site}#/run/{link['id']}")
    page.locator("#waiting-for").wait_for()
    assert page.locator("#waiting-for").inner_text() == f"waiting for {slow['id']} to succeed"
    page.goto(f"{site}#/runs")
    page.select_option("select[name=method]", "dpo")
    page.wait_for_function("arg => location.hash.includes('method=dpo') && document.querySelector('#runs tbody tr')"
                           " && !document.querySelector(`#runs tbody tr[data-run='${arg}']`)", arg=sft)
    rows = page.locator("#runs tbody tr")
    shown = rows.evaluate_all("rows => rows.map((r) => [r.dataset.run, r.cells[6].textContent])")
    assert {dpo["id"], link["id"]} <= {run for run, _ in shown} and {method for _, method in shown} == {"dpo"}
    run_ftm(env, "cancel", slow["id"])
