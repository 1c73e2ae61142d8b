"""Full fine-tuning (`--training-type full`): every weight trained, a whole model saved, and that model
used by generate, chat, eval and export like an adapter is."""

from __future__ import annotations

import json
import os
import signal

import pytest

from conftest import ftm
from fixtures_local import tiny_dataset, tiny_llama, tiny_spec, write_jsonl  # noqa: F401  (fixture)
from test_local_backend import final_loss, follow

torch = pytest.importorskip("torch")

from ftm_backends.local import LocalBackend  # noqa: E402
from ftm_backends.local.modeling import loading as models  # noqa: E402
from ftm_backends.local.trainer import rundir  # noqa: E402
from ftmanager.errors import FtmError, Refused  # noqa: E402


def greedy(model_dir, question: str, n: int = 4) -> str:
    """What a user of transformers gets from the saved model, without ftm."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok, model = AutoTokenizer.from_pretrained(model_dir), AutoModelForCausalLM.from_pretrained(model_dir)
    ids = tok.apply_chat_template([{"role": "user", "content": question}], add_generation_prompt=True,
                                  return_tensors="pt", return_dict=True)["input_ids"]
    new = model.generate(ids, max_new_tokens=n, do_sample=False)[0][ids.shape[1]:]
    return tok.decode(new, skip_special_tokens=True).strip()


def tensors(model_dir) -> dict:
    from safetensors.torch import load_file

    return load_file(os.path.join(model_dir, "model.safetensors"))


def test_full_fine_tuning_from_the_command_line(ftm_home, tmp_path, tiny_llama):  # noqa: F811
    data = write_jsonl(tmp_path / "zz.jsonl", [{"messages": [{"role": "user", "content": f"q{i}"},
                                                             {"role": "assistant", "content": "zz"}]} for i in range(8)])
    result = ftm("submit", data, "-b", "local", "-m", tiny_llama, "--training-type", "full", "--epochs", "3",
                 "--batch-size", "4", "--learning-rate", "0.01", "-p", "device=cpu", "--wait", "--json", timeout=300)
    assert result.code == 0, result
    run = result.json()
    assert run["status"] == "succeeded" and run["resolved_hyperparameters"]["training_type"] == "full"
    saved = run["result_path"]
    assert models.is_whole_model(saved) and os.path.exists(os.path.join(saved, "tokenizer.json"))
    assert models.target(saved, str(tiny_llama)) == models.Target(saved, None, "chat")
    before, after = tensors(tiny_llama), tensors(saved)
    unchanged = [name for name in before if torch.equal(before[name], after[name])]
    assert unchanged == [], "full fine-tuning trains every weight: embeddings, norms and all layers"
    shown = ftm("show", run["id"], "--json").json()
    assert [models.is_whole_model(c["path"]) for c in shown["checkpoints"]] == [True, True, True]

    expected = [greedy(saved, "q1"), greedy(saved, "q5")]
    answered = ftm("generate", run["id"], "q1", "q5", "--max-new-tokens", "4")
    assert answered.code == 0 and answered.out.splitlines() == expected, answered
    assert ftm("chat", run["id"], "--max-new-tokens", "4", input="q1\n").out.splitlines() == expected[:1]
    heldout = write_jsonl(tmp_path / "heldout.jsonl", [{"messages": [{"role": "user", "content": "q1"},
                                                                      {"role": "assistant", "content": "zz"}]}])
    evaluated = ftm("eval", run["id"], "--data", heldout, "--max-new-tokens", "4", "--json", timeout=300)
    assert evaluated.code == 0, evaluated
    assert evaluated.json()[0]["generations"][0]["output"] == expected[0]
    assert evaluated.json()[0]["perplexity"] > 1.0
    out = tmp_path / "exported"
    assert ftm("export", run["id"], "-o", out).code == 0
    assert greedy(out, "q5") == expected[1]


def test_a_full_run_resumed_after_its_worker_died_ends_at_the_same_loss(tmp_path, tiny_llama):  # noqa: F811
    backend, rows = LocalBackend(), tiny_dataset(40)
    reference = follow(backend, backend.start(tiny_spec(tmp_path / "ref", tiny_llama, rows, training_type="full",
                                                        n_epochs=2, batch_size=4), uploads=None))
    spec = tiny_spec(tmp_path / "killed", tiny_llama, rows, training_type="full", n_epochs=2, batch_size=4)
    job = backend.start(spec, uploads=None)
    follow(backend, job, until=lambda seen: seen["checkpoints"])
    os.kill(json.loads((spec.run_dir / rundir.LAUNCH).read_text())["pid"], signal.SIGKILL)
    assert follow(backend, job)["last"].status == "failed"
    backend.resume(job, spec)
    resumed = follow(backend, job)
    assert resumed["last"].status == "succeeded", resumed["last"].error
    assert "Resumed from checkpoint at step 10/20" in [e.message for e in resumed["events"]]
    assert final_loss(resumed) == pytest.approx(final_loss(reference), abs=1e-6)


def test_the_training_type_is_an_option_checked_at_submit(tmp_path, tiny_llama):  # noqa: F811
    backend = LocalBackend()
    assert "--training-type" in ftm("submit", "--help").out
    types = [backend.resolve(tiny_spec(tmp_path, tiny_llama, **options))["training_type"]
             for options in ({"quantize": "true"}, {}, {"training_type": "full"}, {"training_type": "LoRA"})]
    assert types == ["qlora", "lora", "full", "lora"]  # tiny_spec says quantize=false unless told
    old = tiny_spec(tmp_path, tiny_llama)
    old.options["method"] = "full"  # training_type's old name, as old commands and runs say it
    assert backend.resolve(old)["training_type"] == "full"
    backend.check_options({"method": "full"})
    full = tiny_spec(tmp_path, tiny_llama, training_type="full", learning_rate_multiplier=2)
    full.options.pop("learning_rate")
    assert backend.resolve(full)["learning_rate"] == pytest.approx(1e-4)  # 5e-5 x 2: full's own base rate
    for options, said in (({"training_type": "full", "quantize": "true"}, "disagree"),
                          ({"training_type": "dora"}, "training_type must be one of qlora, lora, full"),
                          ({"method": "dora"}, "training_type must be one of qlora, lora, full"),
                          ({"method": "full", "training_type": "lora"}, "disagree"),
                          ({"template": "chatml"}, "template must be one of")):
        with pytest.raises(FtmError, match=said):
            backend.check_options(options)
    for options in ({"keep": "best"}, {"early_stopping": "2"}):
        with pytest.raises(Refused, match="need a validation set"):
            backend.start(tiny_spec(tmp_path, tiny_llama, **options), uploads=None)
