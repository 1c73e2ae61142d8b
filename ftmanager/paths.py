"""Where ftm keeps its files: FTM_HOME, else the platform's user data dir."""

import os
from pathlib import Path


def home() -> Path:
    """The ftm home directory, created on first use."""
    env = os.environ.get("FTM_HOME")
    if env:
        path = Path(env).expanduser()
    else:
        import platformdirs  # imported late: only needed when FTM_HOME is unset

        path = Path(platformdirs.user_data_dir("ftm", appauthor=False))
    path.mkdir(parents=True, exist_ok=True)
    return path


def ledger_path() -> Path:
    return home() / "ftm.db"


def datasets_dir() -> Path:
    path = home() / "datasets"
    path.mkdir(exist_ok=True)
    return path


def runs_dir() -> Path:
    path = home() / "runs"
    path.mkdir(exist_ok=True)
    return path


def run_dir(run_id: str) -> Path:
    path = runs_dir() / run_id
    path.mkdir(exist_ok=True)
    return path


def models_dir() -> Path:
    path = home() / "models"
    path.mkdir(exist_ok=True)
    return path
