"""The whole story of ftm in one script (`make demo` runs it).

1. validate and store the bundled records dataset: a sentence about a country's capital in,
   exactly {"country": ..., "capital": ...} out;
2. fine-tune it on OpenAI: the real API when OPENAI_API_KEY is set, else ftm's stand-in server
   on 127.0.0.1 (said so plainly: nothing is trained there);
3. re-run the same data locally with QLoRA on SmolLM2-135M-Instruct (real training, on CPU here);
4. evaluate both runs and the untuned base model on held-out sentences about other countries,
   with ftm's scores and three graders in OpenAI's shapes (examples/records_graders.json);
5. say what the numbers mean; compare the runs and plot their loss curves; show the lineage.

Why records and not questions: asked "What is the capital of Sweden?", SmolLM2-135M answers
"Stockholm" in prose but, made to answer in a JSON slot, recalls only about one capital in four
(measured on 50 countries): a question-answering demo measures what the model knows, not what
fine-tuning taught it. Here every fact is in the prompt, so the scores measure the task itself.

Each step is the `ftm` command a user would type, printed before it runs.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
HOSTED_MODEL = os.environ.get("FTM_DEMO_OPENAI_MODEL", "gpt-4o-mini-2024-07-18")
SYSTEM = "Extract the country and its capital as JSON."  # the training data's system message


def ftm(*args: str, capture: bool = False) -> str:
    """Run one ftm command as a user would, echoing it; stop the story if it fails."""
    print(f"\n$ ftm {shlex.join(args)}", flush=True)
    proc = subprocess.run([sys.executable, "-m", "ftmanager", *args], text=True,
                          stdout=subprocess.PIPE if capture else None)
    if proc.returncode != 0:
        sys.exit(f"demo stopped: `ftm {shlex.join(args)}` exited {proc.returncode}")
    if capture:
        print(proc.stdout, end="")
    return proc.stdout or ""


def openai_endpoint():
    """The real API when a key is set; otherwise start the stand-in and point the SDK at it."""
    if os.environ.get("OPENAI_API_KEY"):
        print("Using the OpenAI API (OPENAI_API_KEY is set).")
        return None
    from ftmanager.standin import standin

    server = standin("127.0.0.1", 0, speed=float(os.environ.get("FTM_DEMO_SPEED", "20")))
    os.environ.update(OPENAI_BASE_URL=server.url, OPENAI_API_KEY="sk-standin-demo")
    print(f"No OPENAI_API_KEY set: using ftm's stand-in OpenAI server at {server.url}.\n"
          "It speaks OpenAI's fine-tuning API but trains nothing: its ft: model only echoes the training data.")
    import threading

    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def explain(local: str) -> None:
    """What the evaluation's numbers say, in words, from the ledger."""
    from ftmanager.ledger import ledger

    store = ledger()
    run = store.run(local)
    tuned = store.evaluations(run_id=local)[-1]
    base = store.evaluations(label=f"base:local:{run['base_model']}")[-1]
    grades = {e["id"]: {g["grader"]: g["mean"] for g in store.grade_summary(e["id"])} for e in (tuned, base)}
    n = tuned["n_examples"]
    print(f"""
What the numbers mean ({n} held-out sentences about countries the training data never named):
  exact_match  the whole record right, format and facts: tuned {tuned['exact_match']:.0%}, base {base['exact_match']:.0%}
  country, capital  that field of the JSON answer right (0 when the answer is not JSON):
               tuned {grades[tuned['id']]['country']:.0%} / {grades[tuned['id']]['capital']:.0%}, \
base {grades[base['id']]['country']:.0%} / {grades[base['id']]['capital']:.0%}
  mentions     the capital appears anywhere in the answer: tuned {grades[tuned['id']]['mentions']:.0%}, \
base {grades[base['id']]['mentions']:.0%}
               (the base may name the capital in prose; only the record counts as the task done)
  perplexity   how surprised each model is by the reference records (1 = certain): tuned \
{tuned['perplexity']:.2f}, base {base['perplexity']:.2f}
  The stand-in's ft: model trains nothing and answers only sentences it was trained on: 0 here by design.""")


def run_id(output: str) -> str:
    """The run id printed first on submit's and rerun's summary line."""
    return [line for line in output.splitlines() if line.startswith("run-")][-1].split()[0]


def main() -> None:
    server = openai_endpoint()
    data, heldout, graders = HERE / "records.jsonl", HERE / "records_heldout.jsonl", HERE / "records_graders.json"
    ftm("datasets", "validate", str(data), "--model", HOSTED_MODEL)
    ftm("datasets", "add", str(data), "--name", "records")
    hosted = run_id(ftm("submit", "records", "--backend", "openai", "--model", HOSTED_MODEL,
                        "--epochs", "3", "--suffix", "records", "--seed", "7", "--wait", capture=True))
    # The same data on this machine: SmolLM2 with QLoRA. 5e-4 (2.5x the default rate) for 4 epochs
    # of 24 short examples keeps it to about two minutes of CPU. On a GPU drop --learning-rate and
    # train the default way.
    local = run_id(ftm("rerun", hosted, "--backend", "local", "--epochs", "4", "--batch-size", "4",
                       "--learning-rate", "5e-4", "--max-length", "96", "--wait", capture=True))
    ftm("generate", local, "Quito is the capital of Ecuador.", "--system", SYSTEM, "--max-new-tokens", "24")
    ftm("eval", hosted, local, "--data", str(heldout), "--baseline", "--graders", str(graders),
        "--max-new-tokens", "24")
    explain(local)
    ftm("compare", hosted, local, "--plot", "records-compare.png", "--by", "epoch")
    ftm("datasets", "lineage", "records")
    ftm("models")
    print(f"\nDone. The ledger: {os.environ.get('FTM_HOME') or 'your user data dir'}/ftm.db "
          "(`ftm runs` lists what this demo did).")
    if server:
        server.close()


if __name__ == "__main__":
    main()
