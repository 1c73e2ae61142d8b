"""The tested set of versions: requirements-lock.txt pins every package pyproject.toml asks for
(the core and the local, dev and plot extras that `make test` installs), each inside its range."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
EXTRAS = ("local", "dev", "plot")


def project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def locked() -> dict[str, str]:
    pins = re.findall(r"^([A-Za-z0-9._-]+)==(\S+)", (ROOT / "requirements-lock.txt").read_text(), re.MULTILINE)
    return {canonicalize_name(name): version for name, version in pins}


def test_the_lock_pins_every_dependency_inside_its_range():
    wanted = project()["dependencies"] + [r for extra in EXTRAS for r in project()["optional-dependencies"][extra]]
    pins = locked()
    for line in wanted:
        req = Requirement(line)
        if req.marker and not req.marker.evaluate({"extra": ""}):
            continue
        name = canonicalize_name(req.name)
        assert name in pins, f"{req.name} is in pyproject.toml but not in the lock: run `make lock`"
        assert req.specifier.contains(pins[name], prereleases=True), f"{name}=={pins[name]} is outside {req.specifier}"
    assert pins["torch"].startswith("2.13.0")  # the CPU wheel these machines have on disk


def test_the_documented_install_can_plot():
    """`pip install 'ftm[local]'`, as the README says, brings what `ftm compare --plot` needs."""
    local = {canonicalize_name(Requirement(r).name) for r in project()["optional-dependencies"]["local"]}
    assert "matplotlib" in local
