"""generate() answers through the chat template; export() writes a model plain transformers loads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fixtures_local import tiny_llama, tiny_spec  # noqa: F401  (fixture)
from test_local_backend import follow

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
