"""`ftm generate`, `ftm chat`, `ftm export`: use what a run trained."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from . import app


@app.command()
def generate(
    run: str = typer.Argument(..., help="A succeeded run."),
    prompt: list[str] = typer.Argument(..., help="One or more prompts (answered as one batch)."),
    system: str = typer.Option(None, "--system", "-s", help="A system message before each prompt."),
    max_new_tokens: int = typer.Option(256, "--max-new-tokens", help="Longest answer."),
):
    """Answer prompts with a run's fine-tuned model, through its chat template."""
    from .. import jobs

    head = [{"role": "system", "content": system}] if system else []
    answers = jobs.generate(run, [head + [{"role": "user", "content": p}] for p in prompt], max_new_tokens)
    for answer in answers:
        print(answer)


@app.command()
def chat(
    run: str = typer.Argument(..., help="A succeeded run."),
    system: str = typer.Option(None, "--system", "-s", help="A system message to start with."),
    max_new_tokens: int = typer.Option(256, "--max-new-tokens", help="Longest answer."),
):
    """Talk with a run's model; the conversation so far goes with each turn. Ctrl-D ends it."""
    from .. import jobs

    messages = [{"role": "system", "content": system}] if system else []
    interactive = sys.stdin.isatty()
    while True:
        if interactive:
            print("you> ", end="", flush=True)
        line = sys.stdin.readline()
        if not line:
            break
        if not line.strip():
            continue
        messages.append({"role": "user", "content": line.strip()})
        answer = jobs.generate(run, [messages], max_new_tokens)[0]
        messages.append({"role": "assistant", "content": answer})
        print(f"model> {answer}" if interactive else answer, flush=True)


@app.command("export")
def export_(
    run: str = typer.Argument(..., help="A succeeded local run."),
    output: Path = typer.Option(..., "--output", "-o", help="A new directory to write."),
    merge: bool = typer.Option(True, "--merge/--adapter", help="Merge LoRA into the base (default), or copy the adapter."),
):
    """Write a local run's model (merged safetensors + tokenizer + chat template) for plain transformers."""
    from .. import jobs

    out = jobs.export(run, output, merge=merge)
    print(f"Wrote {'merged model' if merge else 'adapter'} to {out}")
