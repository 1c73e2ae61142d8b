"""`ftm standin`: a stand-in for OpenAI's fine-tuning API on this machine, for tests and demos."""

from __future__ import annotations

import signal
import sys

import typer

from ..errors import InvalidInput
from . import app


@app.command()
def standin(
    host: str = typer.Option("127.0.0.1", help="Address to listen on (loopback unless you mean otherwise)."),
    port: int = typer.Option(8000, help="Port to listen on; 0 picks a free one."),
    speed: float = typer.Option(1.0, help="Clock speed: 10 runs every job ten times faster."),
    fault: list[str] = typer.Option(
        [], "--fault", help='Inject a fault, e.g. "429 POST /fine_tuning/jobs times=2 retry_after=1" '
        "(kinds: 429 500 503 401 403 drop drop_after slow empty_error; repeatable)."),
    api_key: str = typer.Option(None, "--api-key", help="Refuse requests without this key (default: any key)."),
):
    """Serve a stand-in OpenAI fine-tuning API: real HTTP, OpenAI's shapes, jobs on a clock.

    Nothing is trained: jobs move through OpenAI's statuses on a clock, and their ft: models
    answer chat requests from the training file. Point the SDK (or ftm) at it with
    OPENAI_BASE_URL. Faults can also be added while it runs: POST /_standin/faults.
    """
    from ..api import faults as fault_specs
    from ..api import standin as make_standin

    if speed <= 0:
        raise InvalidInput(f"--speed must be above 0, not {speed:g}", "Try --speed 10.")
    try:
        server = make_standin(host, port, speed, api_key=api_key)
    except OSError as err:
        raise InvalidInput(f"cannot listen on {host}:{port} ({err.strerror})",
                           "Pick another with --port, or --port 0 for a free one.") from None
    try:
        for text in fault:
            server.faults.add(**fault_specs.parse(text))
    except (TypeError, ValueError) as err:
        server.close()
        raise InvalidInput(f"bad --fault {text!r}: {err}", "See `ftm standin --help`.") from None
    _serve(server, speed)


def _serve(server, speed: float) -> None:
    print(f"ftm stand-in OpenAI server on {server.url} (clock x{speed:g}). Not OpenAI: nothing is trained.")
    print(f"  export OPENAI_BASE_URL={server.url} OPENAI_API_KEY=sk-standin", flush=True)
    serve_until_stopped(server, "stand-in")


def serve_until_stopped(server, label: str) -> None:
    """Serve until Ctrl-C or SIGTERM, then close the server (and say so on stderr)."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # stop as cleanly as on Ctrl-C
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()
        print(f"{label} stopped", file=sys.stderr)
