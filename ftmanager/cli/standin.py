"""`ftm standin`: a stand-in for a provider's fine-tuning API on this machine, for tests and demos."""

from __future__ import annotations

import math
import signal
import sys
from pathlib import Path

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
    provider: str = typer.Option("openai", "--provider", help="Whose API to stand in for: openai, azure, fireworks or together."),
    adapter: Path = typer.Option(None, "--adapter", help="fireworks, together: the adapter folder a completed job's model downloads as."),
    merged: Path = typer.Option(None, "--merged", help="together: the whole-model folder a job's merged weights download as."),
):
    """Serve a stand-in fine-tuning API: real HTTP, the provider's shapes, jobs on a clock.

    Nothing is trained: jobs move through the provider's statuses on a clock, and (OpenAI,
    Azure) their ft: models answer chat requests from the training file; a Fireworks job's
    model downloads as the --adapter folder. The first lines printed say how to point the
    provider's SDK (or ftm) at it. Faults can also be added while it runs: POST /_standin/faults.
    """
    from ..standin import PROVIDERS
    from ..standin import faults as fault_specs
    from ..standin import standin as make_standin

    if not math.isfinite(speed) or speed <= 0:  # NaN compares false with everything: check it first
        raise InvalidInput(f"--speed must be above 0 and finite, not {speed:g}", "Try --speed 10.")
    if provider not in PROVIDERS:
        raise InvalidInput(f"no stand-in for {provider!r}", f"Choose one of: {', '.join(PROVIDERS)}.")
    extra = {k: v for k, v in (("adapter", adapter), ("merged", merged)) if v is not None}
    if extra and provider not in ("fireworks", "together") or merged is not None and provider != "together":
        raise InvalidInput(f"--{'merged' if merged is not None else 'adapter'} is not for --provider {provider}",
                           "--adapter is for fireworks and together, --merged for together.")
    try:
        server = make_standin(host, port, speed, provider, api_key=api_key, **extra)
    except OSError as err:
        raise InvalidInput(f"cannot listen on {host}:{port} ({err.strerror})",
                           "Pick another with --port, or --port 0 for a free one.") from None
    try:
        for text in fault:
            server.faults.add(**fault_specs.parse(text))
    except (TypeError, ValueError) as err:
        server.close()
        raise InvalidInput(f"bad --fault {text!r}: {err}", "See `ftm standin --help`.") from None
    _serve(server, speed, provider)


# how a client of each provider is pointed at the stand-in: (name, environment)
_CLIENTS = {
    "openai": ("OpenAI", "OPENAI_BASE_URL={url} OPENAI_API_KEY=sk-standin"),
    "azure": ("Azure OpenAI", "AZURE_OPENAI_ENDPOINT={url} AZURE_OPENAI_API_KEY=standin OPENAI_API_VERSION=2025-04-01-preview"),
    "fireworks": ("Fireworks", "FIREWORKS_BASE_URL={url} FIREWORKS_API_KEY=fw-standin FIREWORKS_ACCOUNT_ID=standin"),
    "together": ("Together AI", "TOGETHER_BASE_URL={base} TOGETHER_API_KEY=tg-standin"),  # the SDK adds /v1
}


def _serve(server, speed: float, provider: str = "openai") -> None:
    name, env = _CLIENTS.get(provider, (provider, ""))
    print(f"ftm stand-in {name} server on {server.url} (clock x{speed:g}). Not {name}: nothing is trained.")
    print(f"  export {env.format(url=server.url, base=getattr(server, 'base_url', server.url))}", flush=True)
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
