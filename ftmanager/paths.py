"""Where ftm keeps its files: FTM_HOME, else the platform's user data dir."""

import os
from pathlib import Path

from .errors import LedgerError


def _ensure(path: Path) -> Path:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise LedgerError(
            f"cannot create {path} ({err.strerror})", "Point FTM_HOME at a writable directory."
        ) from None
    return path


def home() -> Path:
    """The ftm home directory, created on first use."""
    env = os.environ.get("FTM_HOME")
    if env:
        path = Path(env).expanduser()
    else:
        import platformdirs  # imported late: only needed when FTM_HOME is unset

        path = Path(platformdirs.user_data_dir("ftm", appauthor=False))
    return _ensure(path)


def ledger_path() -> Path:
    return home() / "ftm.db"


def datasets_dir() -> Path:
    return _ensure(home() / "datasets")


def runs_dir() -> Path:
    return _ensure(home() / "runs")


def run_dir(run_id: str) -> Path:
    return _ensure(runs_dir() / run_id)


def models_dir() -> Path:
    return _ensure(home() / "models")
