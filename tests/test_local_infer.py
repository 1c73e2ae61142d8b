"""generate() answers through the model pool and the chat template; `ftm chat` keeps the model loaded;
export() writes a model plain transformers loads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fixtures_local import tiny_llama, tiny_spec  # noqa: F401  (fixture)
from test_local_backend import follow
from test_local_use import trained_run  # noqa: F401  (fixture: a local run through `ftm submit`)

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from ftm_backends.local import LocalBackend  # noqa: E402
from ftmanager.errors import FtmError  # noqa: E402

ANSWER = "zz"


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_llama):  # noqa: F811
    """A tiny run taught to answer everything with ANSWER."""
    tmp = tmp_path_factory.mktemp("trained")
    rows = [{"messages": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": ANSWER}]}
            for i in range(8)]
    backend = LocalBackend()
    job = backend.start(tiny_spec(tmp, tiny_llama, rows, n_epochs=10, batch_size=4, learning_rate="0.05",
                                  lora_dropout="0"), uploads=None)
    last = follow(backend, job)["last"]
    assert last.status == "succeeded", last.error
    return backend, last.result_path


def test_generate_uses_the_adapter_and_the_base_alone_differs(trained, tiny_llama):  # noqa: F811
    backend, adapter = trained
    convs = [[{"role": "user", "content": "q1"}], [{"role": "user", "content": "q3"}]]
    tuned = backend.generate("local:run-tiny", adapter, str(tiny_llama), convs, max_new_tokens=4)
    base = backend.generate(None, None, str(tiny_llama), convs, max_new_tokens=4)
    assert tuned == [ANSWER, ANSWER]
    assert base != tuned
    last_ckpt = max((Path(adapter).parent / "checkpoints").glob("step-*"), key=lambda p: int(p.name[5:]))
    assert backend.generate("local:run-tiny:step-20", str(last_ckpt / "adapter"), None, convs[:1],
                            max_new_tokens=4) == [ANSWER]  # base found from the adapter's config


def test_export_merged_loads_in_plain_transformers_and_answers_the_same(trained, tiny_llama, tmp_path):  # noqa: F811
    backend, adapter = trained
    out = backend.export(adapter, str(tiny_llama), str(tmp_path / "merged"), merge=True)
    assert list(out.glob("*.safetensors")) and not (out / "adapter_config.json").exists()
    tok = transformers.AutoTokenizer.from_pretrained(out)
    model = transformers.AutoModelForCausalLM.from_pretrained(out)
    ids = tok.apply_chat_template([{"role": "user", "content": "q5"}], add_generation_prompt=True,
                                  return_tensors="pt", return_dict=True)
    new = model.generate(**ids, max_new_tokens=3, do_sample=False)[0, ids["input_ids"].shape[1]:]
    assert tok.decode(new, skip_special_tokens=True) == ANSWER
    with pytest.raises(FtmError, match="not empty"):
        backend.export(adapter, str(tiny_llama), str(out))
    bare = backend.export(adapter, str(tiny_llama), str(tmp_path / "bare"), merge=False)
    assert json.loads((bare / "adapter_config.json").read_text())["peft_type"] == "LORA"


def test_chat_answers_every_line_with_the_model_loaded_once(trained_run):  # noqa: F811
    """`ftm chat` keeps its model in this process's pool: one base and one adapter load for all lines."""
    from typer.testing import CliRunner

    from ftm_backends.local.engine.pool import shared
    from ftmanager.cli import app

    before = shared().stats()
    result = CliRunner().invoke(app, ["chat", trained_run["id"], "--max-new-tokens", "4"], input="q2\nq3\n")
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [ANSWER] * 2
    after = shared().stats()
    assert after["base_loads"] - before["base_loads"] <= 1 and after["adapter_loads"] - before["adapter_loads"] == 1
