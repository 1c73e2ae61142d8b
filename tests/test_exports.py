"""Every dataset export is recorded in the ledger (m006_exports) and shown by `ftm datasets
lineage` and `ftm datasets show` beside uploads and runs."""

from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3

from conftest import ftm


def stored(chat_file) -> dict:
    added = ftm("datasets", "add", chat_file, "--name", "sums", "--json")
    assert added.code == 0, added
    return added.json()


def test_an_export_to_a_file_is_recorded_with_what_it_wrote(ftm_home, chat_file, tmp_path):
    ds = stored(chat_file)
    outside, inside = tmp_path / "for-together.jsonl", ftm_home / "exports" / "sums.jsonl"
    inside.parent.mkdir()
    assert ftm("datasets", "export", "sums", "--to", "together", "-o", outside).code == 0
    assert ftm("datasets", "export", "sums", "--to", "alpaca", "-o", inside).code == 0
    tree = ftm("datasets", "lineage", "sums", "--json").json()
    first, second = tree["exports"]
    body = outside.read_bytes()
    assert (first["target"], first["path"], first["kept"], first["dropped"]) == ("together", str(outside), 12, 0)
    assert first["sha256"] == hashlib.sha256(body).hexdigest() and first["bytes"] == len(body)
    assert second["path"] == str(inside) and second["sha256"] == hashlib.sha256(inside.read_bytes()).hexdigest()
    rows = sqlite3.connect(ftm_home / "ftm.db").execute("SELECT path, dataset_id FROM exports ORDER BY id").fetchall()
    assert rows == [(str(outside), ds["id"]), ("exports/sums.jsonl", ds["id"])]  # relative inside FTM_HOME
    text = ftm("datasets", "lineage", "sums").out
    assert f"export together -> {outside} (12 examples, {len(body):,} bytes, sha256 {first['sha256'][:12]}" in text
    assert text.index("dataset ") < text.index("export together") < text.index("export alpaca")
    assert f"export: alpaca -> {inside} (12 examples" in ftm("datasets", "show", "sums").out
    moved = tmp_path / "moved-home"  # a copied FTM_HOME finds the exports inside it at the new place
    shutil.copytree(ftm_home, moved)
    paths = [e["path"] for e in ftm("datasets", "lineage", "sums", "--json", env={"FTM_HOME": str(moved)}).json()["exports"]]
    assert paths == [str(outside), str(moved / "exports" / "sums.jsonl")]


def test_an_export_to_standard_output_is_recorded_without_a_path(ftm_home, chat_file):
    stored(chat_file)
    result = ftm("datasets", "export", "sums", "--to", "sharegpt")
    assert result.code == 0 and len(result.out.splitlines()) == 12
    [row] = ftm("datasets", "lineage", "sums", "--json").json()["exports"]
    assert row["path"] is None and row["target"] == "sharegpt"
    assert row["sha256"] == hashlib.sha256(result.out.encode()).hexdigest() and row["bytes"] == len(result.out.encode())
    assert "export sharegpt -> (standard output) (12 examples" in ftm("datasets", "lineage", "sums").out


def test_an_export_that_writes_nothing_records_nothing(ftm_home, tmp_path):
    rows = [{"messages": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": f"a{i}"},
                          {"role": "user", "content": "more"}, {"role": "assistant", "content": "done"}]} for i in range(12)]
    data = tmp_path / "multi.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert ftm("datasets", "add", data, "--name", "multi").code == 0
    refused = ftm("datasets", "export", "multi", "--to", "alpaca", "-o", tmp_path / "a.jsonl")
    assert refused.code == 1 and not (tmp_path / "a.jsonl").exists()  # alpaca holds one turn
    nowhere = ftm("datasets", "export", "multi", "--to", "openai", "-o", tmp_path / "missing" / "o.jsonl")
    assert nowhere.code == 1
    assert ftm("datasets", "lineage", "multi", "--json").json()["exports"] == []
