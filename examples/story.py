"""The whole story of ftm in one script (`make demo` runs it).

1. validate and store the bundled capitals dataset;
2. fine-tune it on OpenAI: the real API when OPENAI_API_KEY is set, else ftm's stand-in server
   on 127.0.0.1 (said so plainly: nothing is trained there);
3. re-run the same data locally with QLoRA on SmolLM2-135M-Instruct (real training, on CPU here);
4. evaluate both runs and the untuned base model on held-out questions;
5. compare the runs and plot their loss curves; show the lineage of the dataset.

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
    from ftmanager.api import standin

    server = standin("127.0.0.1", 0, speed=float(os.environ.get("FTM_DEMO_SPEED", "20")))
    os.environ.update(OPENAI_BASE_URL=server.url, OPENAI_API_KEY="sk-standin-demo")
    print(f"No OPENAI_API_KEY set: using ftm's stand-in OpenAI server at {server.url}.\n"
          "It speaks OpenAI's fine-tuning API but trains nothing: its ft: model only echoes the training data.")
    import threading

    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def run_id(output: str) -> str:
    """The run id printed first on submit's and rerun's summary line."""
    return [line for line in output.splitlines() if line.startswith("run-")][-1].split()[0]


def main() -> None:
    server = openai_endpoint()
    data, heldout = HERE / "capitals.jsonl", HERE / "capitals_heldout.jsonl"
    ftm("datasets", "validate", str(data), "--model", HOSTED_MODEL)
    ftm("datasets", "add", str(data), "--name", "capitals")
    hosted = run_id(ftm("submit", "capitals", "--backend", "openai", "--model", HOSTED_MODEL,
                        "--epochs", "3", "--suffix", "capitals", "--seed", "7", "--wait", capture=True))
    # The same data on this machine: SmolLM2 with QLoRA. A high rate and short examples keep it to
    # minutes on a CPU; on a GPU drop --learning-rate and train the default way.
    local = run_id(ftm("rerun", hosted, "--backend", "local", "--epochs", "5", "--batch-size", "4",
                       "--learning-rate", "1e-3", "--max-length", "96", "--wait", capture=True))
    ftm("generate", local, "What is the capital of Peru?", "--system", "Answer in JSON.",
        "--max-new-tokens", "24")
    ftm("eval", hosted, local, "--data", str(heldout), "--baseline", "--max-new-tokens", "24")
    ftm("compare", hosted, local, "--plot", "capitals-compare.png", "--by", "epoch")
    ftm("datasets", "lineage", "capitals")
    ftm("models")
    print(f"\nDone. The ledger: {os.environ.get('FTM_HOME') or 'your user data dir'}/ftm.db "
          "(`ftm runs` lists what this demo did).")
    if server:
        server.close()


if __name__ == "__main__":
    main()
