"""A preference learned locally with DPO on the bundled SmolLM2-135M-Instruct (a few minutes of CPU).

    python examples/preference.py

The bundled records (examples/records.jsonl: a sentence about a country's capital in, the
record {"country": ..., "capital": ...} out) become preference pairs: the bare record is the
preferred answer, the same facts said in prose the rejected one. Nothing else differs, so all
DPO can learn is the preference: answer with the record, not with a sentence. Then `ftm eval
--baseline` answers held-out sentences about other countries with the tuned model and the
untuned base, side by side: first the preference itself on held-out pairs, then the answers.

What one run showed (3 epochs, beta 0.1, LoRA, CPU, about 2 minutes): on the 8 held-out pairs
about countries it never saw, the tuned model's margin for the record over the sentence is wider
than the base's on all 8 (preference_accuracy 1). prefers_chosen is 1 for both: the base already
finds the short record likelier than the sentence, only by less. In generation every tuned answer
opens a JSON object where the base mostly answers in prose ("The capital city of Sweden is
Stockholm."). The exact record is not learned (exact_match 0 for both): pairs that differ only in
format teach the format, not the record's keys; SFT on the records first, then DPO on top of it
(`--method dpo -m SFT_RUN`), is the usual way to get both.

Each step is the `ftm` command a user would type, printed before it runs. Not run by the test
suite (tests/test_local_dpo_run.py trains DPO on a tiny model instead).
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent


def ftm(*args: str) -> str:
    """Run one ftm command as a user would, echoing it; stop if it fails."""
    print(f"\n$ ftm {shlex.join(args)}", flush=True)
    proc = subprocess.run([sys.executable, "-m", "ftmanager", *args], text=True, stdout=subprocess.PIPE)
    print(proc.stdout, end="")
    if proc.returncode != 0:
        sys.exit(f"example stopped: `ftm {shlex.join(args)}` exited {proc.returncode}")
    return proc.stdout


def pair(chat: dict) -> dict:
    """A chat example as a pair: its record preferred over the same facts in a sentence."""
    *prompt, answer = chat["messages"]
    record = json.loads(answer["content"])
    prose = f"Sure! The country is {record['country']} and its capital is {record['capital']}."
    return {"input": {"messages": prompt}, "preferred_output": [answer],
            "non_preferred_output": [{"role": "assistant", "content": prose}]}


def pairs(source: Path, dest: Path) -> Path:
    """source's chats as preference pairs, written to dest."""
    rows = [json.loads(line) for line in source.read_text().splitlines() if line.strip()]
    dest.write_text("".join(json.dumps(pair(r)) + "\n" for r in rows))
    return dest


def main() -> None:
    scratch = Path(tempfile.mkdtemp())
    data = pairs(HERE / "records.jsonl", scratch / "records_preference.jsonl")
    heldout = pairs(HERE / "records_heldout.jsonl", scratch / "heldout_preference.jsonl")
    ftm("datasets", "add", str(data), "--name", "records-preference")
    out = ftm("submit", "records-preference", "--backend", "local", "--method", "dpo", "--beta", "0.1",
              "--training-type", "lora", "--epochs", "3", "--batch-size", "4", "-p", "learning_rate=5e-4",
              "--wait", "--json")
    run = json.loads(out)["id"]
    # The preference itself, on pairs about countries it never saw: does the tuned model find the
    # record likelier than the sentence (prefers_chosen), and by a wider margin than the base does
    # (preference_accuracy)?
    ftm("eval", run, "--data", str(heldout), "--baseline")
    # What it now writes for those sentences, beside the base's answers.
    ftm("eval", run, "--data", str(HERE / "records_heldout.jsonl"), "--baseline", "--max-new-tokens", "32")


if __name__ == "__main__":
    main()
