"""The README shows every command once, and its two set-up commands are the ones CI runs."""

from __future__ import annotations

import re

from conftest import ROOT


def command_paths() -> list[str]:
    """Every `ftm ...` command, sub-commands included, as typed by a user."""
    import typer.main

    from ftmanager.cli import app

    group = typer.main.get_command(app)
    paths = []
    for name, cmd in group.commands.items():
        subs = getattr(cmd, "commands", None)
        paths += [f"ftm {name} {sub}" for sub in subs] if subs else [f"ftm {name}"]
    return sorted(paths)


def test_every_command_is_in_the_readme():
    readme = (ROOT / "README.md").read_text()
    missing = [p for p in command_paths() if not re.search(re.escape(p) + r"\b", readme)]
    assert not missing, f"commands missing from README.md: {missing}"
    assert len(command_paths()) >= 15


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in readme and "make demo" in readme
    assert "make test" in ci
