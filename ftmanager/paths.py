"""Where ftm keeps its files: FTM_HOME, else the platform's user data dir.

The ledger keeps paths inside FTM_HOME relative to it (to_ledger / from_ledger), so a copied
or restored FTM_HOME works from its new place.
"""

import os
from pathlib import Path, PurePosixPath

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
    """The ftm home directory (absolute), created on first use."""
    return _ensure(home_path())


def home_path() -> Path:
    """Where the ftm home directory is (absolute), whether or not it exists yet."""
    env = os.environ.get("FTM_HOME")
    if env:
        return Path(env).expanduser().absolute()
    import platformdirs  # imported late: only needed when FTM_HOME is unset

    return Path(platformdirs.user_data_dir("ftm", appauthor=False)).absolute()


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


def locks_dir() -> Path:
    """Lock files that processes sharing this FTM_HOME take in turn."""
    return _ensure(home() / "locks")


def to_ledger(value, home_dir: Path):
    """A path as the ledger stores it: relative to home_dir when it lies inside, else as given.

    Only absolute paths are converted; anything else (None, a URL, a hub id) stays verbatim.
    """
    if not value or not os.path.isabs(str(value)):
        return value
    path = Path(value)
    for base in (home_dir, home_dir.resolve()):
        if path.is_relative_to(base) and path != base:
            return path.relative_to(base).as_posix()
    return str(value)


def from_ledger(value, home_dir: Path):
    """A path from the ledger made absolute again (a relative one lies under home_dir)."""
    if not value or not isinstance(value, str) or os.path.isabs(value) or "://" in value:
        return value
    return str(home_dir / PurePosixPath(value))
