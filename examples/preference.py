"""A preference learned locally with DPO on the bundled SmolLM2-135M-Instruct (a few minutes of CPU).

    python examples/preference.py

The bundled records (examples/records.jsonl: a sentence about a country's capital in, the
record {"country": ..., "capital": ...} out) become preference pairs: the bare record is the
preferred answer, the same facts said in prose the rejected one. Nothing else differs, so all
DPO can learn is the preference: answer with the record, not with a sentence. Then `ftm eval
--baseline` answers held-out sentences about other countries with the tuned model and the
untuned base, side by side.

What one run showed (3 epochs, beta 0.1, LoRA, CPU): every one of the 8 tuned answers opens a
JSON object where the base answers in prose ("The capital city of Sweden is Stockholm."): the
preference for JSON over a sentence is learned. The exact record is not (exact_match 0 for
both): 24 pairs that differ only in format teach the format, not the record's keys; SFT on the
records first, then DPO, is the usual way to get both.

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


def main() -> None:
    rows = [json.loads(line) for line in (HERE / "records.jsonl").read_text().splitlines() if line.strip()]
    data = Path(tempfile.mkdtemp()) / "records_preference.jsonl"
    data.write_text("".join(json.dumps(pair(r)) + "\n" for r in rows))
    ftm("datasets", "add", str(data), "--name", "records-preference")
    out = ftm("submit", "records-preference", "--backend", "local", "--method", "dpo", "--beta", "0.1",
              "--training-type", "lora", "--epochs", "3", "--batch-size", "4", "-p", "learning_rate=5e-4",
              "--wait", "--json")
    run = json.loads(out)["id"]
    ftm("eval", run, "--data", str(HERE / "records_heldout.jsonl"), "--baseline", "--max-new-tokens", "32")


if __name__ == "__main__":
    main()
