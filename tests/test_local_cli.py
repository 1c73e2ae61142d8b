"""`ftm submit --backend local --wait` end to end: ledger, detached worker, tiny real model."""

from __future__ import annotations

import pytest

from conftest import ftm
from fixtures_local import tiny_llama  # noqa: F401  (fixture)

pytest.importorskip("peft")


def test_submit_local_wait_trains_and_records_the_model(ftm_home, chat_file, tiny_llama):  # noqa: F811
    res = ftm("submit", chat_file, "--backend", "local", "--model", tiny_llama, "--epochs", "2",
              "--batch-size", "4", "--no-quantize", "-p", "device=cpu", "--wait", "--json", timeout=300)
    assert res.code == 0, res
    run = res.json()
    assert run["status"] == "succeeded", res
    assert run["result_model"] == f"local:{run['id']}"
    shown = ftm("show", run["id"], "--json")
    assert shown.code == 0, shown
    assert "train_loss" in shown.out and f"local:{run['id']}:step-3" in shown.out
