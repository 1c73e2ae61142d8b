"""The real default model: SmolLM2-135M-Instruct from PyPI, QLoRA-trained on the capitals set.

Slow (minutes of CPU): the GGUF is converted once for the module, then one short run.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from fixtures_local import write_jsonl  # noqa: F401  (sets passive OpenMP before torch loads)
from test_local_backend import follow

pytest.importorskip("gguf")
pytest.importorskip("bitsandbytes")

from ftm_backends.local import LocalBackend  # noqa: E402
from ftm_backends.local.modeling import loading as models  # noqa: E402
from ftmanager.backend import RunSpec  # noqa: E402

pytestmark = pytest.mark.slow
CAPITALS = Path(__file__).resolve().parent.parent / "examples" / "capitals.jsonl"


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    """An FTM_HOME holding the converted SmolLM2, shared by this module's tests."""
    with pytest.MonkeyPatch.context() as mp:
        path = tmp_path_factory.mktemp("smollm2-home")
        mp.setenv("FTM_HOME", str(path))
        try:
            models.smollm2_gguf_dir()
        except Exception as exc:  # noqa: BLE001
            pytest.skip(str(exc))
        yield path


def test_smollm2_is_converted_once_to_safetensors(home):
    killed = home / "models" / ".SmolLM2-killed"  # what a conversion killed midway leaves
    (killed / "half").mkdir(parents=True)
    first = models.ensure_smollm2()
    assert first.parent == home / "models" and list(first.glob("*.safetensors"))
    assert not [p for p in first.parent.iterdir() if p.name.startswith(".")], "no half-built cache left"
    t0 = time.time()
    assert models.ensure_smollm2() == first and time.time() - t0 < 1.0


def is_trained_style(reply: str, country: str) -> bool:
    """The capitals set's answer style: exactly {"country": ..., "capital": ...}."""
    try:
        answer = json.loads(reply)
    except ValueError:
        return False
    return isinstance(answer, dict) and list(answer) == ["country", "capital"] and answer["country"] == country


def test_fine_tuned_smollm2_answers_in_the_trained_style_and_the_base_does_not(home, tmp_path):
    rows = [json.loads(line) for line in CAPITALS.read_text().splitlines() if line.strip()]
    spec = RunSpec(run_id="run-capitals", base_model=None, training_file=CAPITALS, dataset_id="capitals",
                   n_examples=len(rows), run_dir=tmp_path / "run", seed=1,
                   hyperparameters={"n_epochs": 3},
                   options={"learning_rate": "1e-3", "max_length": "128"})  # QLoRA: quantize defaults on
    backend = LocalBackend()
    last = follow(backend, backend.start(spec, uploads=None), timeout=900)["last"]
    assert last.status == "succeeded", last.error
    prompts = [r["messages"][:-1] for r in rows[:4]]
    countries = [json.loads(r["messages"][-1]["content"])["country"] for r in rows[:4]]
    tuned = backend.generate(last.result_model, last.result_path, None, prompts, max_new_tokens=32)
    base = backend.generate(None, None, None, prompts, max_new_tokens=32)
    assert all(is_trained_style(r, c) for r, c in zip(tuned, countries)), tuned
    assert not any(is_trained_style(r, c) for r, c in zip(base, countries)), base
