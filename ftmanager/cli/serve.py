"""`ftm serve`: an OpenAI-compatible fine-tuning and chat endpoint on this machine."""

from __future__ import annotations

import typer

from ..errors import InvalidInput
from . import app
from .standin import serve_until_stopped


@app.command()
def serve(
    host: str = typer.Option("127.0.0.1", help="Address to listen on (loopback unless you mean otherwise)."),
    port: int = typer.Option(8000, help="Port to listen on; 0 picks a free one."),
    api_key: str = typer.Option(None, "--api-key", envvar="FTM_SERVE_API_KEY", show_envvar=True,
                                help="Refuse requests without this key (default: any key). Prefer the "
                                "environment variable: a flag shows in `ps`."),
    max_file_mb: int = typer.Option(512, help="Largest POST /files upload, in MB (bigger: the Uploads API)."),
    device: str = typer.Option("auto", help="Where chat models run: auto, cpu, cuda or cuda:N."),
    max_batch: int = typer.Option(8, help="Chat requests answered together in one batch, at most."),
    alias: list[str] = typer.Option([], "--alias", help="NAME=RUN: answer NAME with RUN's model where several "
                                    "runs could (kept in the ledger; repeatable)."),
):
    """Serve OpenAI's fine-tuning and chat API with real local training behind it.

    Code written for OpenAI's SDK keeps working: point OPENAI_BASE_URL at the URL printed.
    Each job is an ftm run of the local backend (see `ftm runs`); every local model and
    checkpoint in the ledger answers /v1/chat/completions, a re-run of an OpenAI run under its
    parent's ft: name too. Base-model names map to local models in served_models.toml.
    """
    from ..serve import serve as make_server
    from ..serve.table import user_path

    if max_file_mb < 1 or max_batch < 1:
        raise InvalidInput("--max-file-mb and --max-batch must be at least 1", "")
    from .. import engine

    device = engine.get().check_device(device)
    for choice in alias:
        _choose(choice)
    try:
        server = make_server(host, port, api_key=api_key, max_file_bytes=max_file_mb << 20,
                             device=device, max_batch=max_batch)
    except OSError as err:
        raise InvalidInput(f"cannot listen on {host}:{port} ({err.strerror})",
                           "Pick another with --port, or --port 0 for a free one.") from None
    print(f"ftm serve: OpenAI-compatible fine-tuning and chat on {server.url} (local training)")
    print(f"  export OPENAI_BASE_URL={server.url} OPENAI_API_KEY={'<your key>' if api_key else 'any'}")
    print(f"  base models: {', '.join(server.service.base_models()[:4])}, ... (edit {user_path()})")
    print(f"  dashboard: {server.url.removesuffix('/v1')}/" + (" (sign in with the key)" if api_key else ""), flush=True)
    _keep_runs_moving()
    serve_until_stopped(server, "ftm serve")


def _keep_runs_moving() -> None:
    """Poll unfinished runs in the background as `ftm ui` does, so the dashboard's statuses move."""
    import threading

    from ..ui.api import keep_synced

    threading.Thread(target=keep_synced, args=(5.0, threading.Event()), daemon=True, name="ftm-sync").start()


def _choose(choice: str) -> None:
    """Record NAME=RUN: the run whose model answers NAME."""
    from ..ledger import ledger

    name, _, ref = choice.partition("=")
    if not name or not ref:
        raise InvalidInput(f"--alias {choice!r} is not NAME=RUN", "For example --alias 'ft:gpt-4o-mini-2024-07-18:acme::AbC123=run-1a2b3c4d'.")
    run = ledger().run(ref)
    if run["status"] != "succeeded" or not run["result_path"]:
        raise InvalidInput(f"run {run['id']} has no local model to answer {name}", "Choose a succeeded local run (`ftm models`).")
    ledger().set_model_alias(name, run["id"])
