"""The hosted-backend base as a third party meets it: the README's minimal subclass, registered
like a plugin, runs a job through the official openai SDK against the stand-in, brings its own
data rules to `ftm submit` and validation, and keeps the base's client, key and number rules."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from sdk_backends import MODEL, MemoryUploads, aimed, follow, make_spec, served

from ftmanager import jobs, registry
from ftmanager.backend import Rules
from ftmanager.errors import InvalidInput, NotFound, Refused
from ftmanager.hosted import env_number
from ftmanager.standin import standin

KEY = "sk-acme-" + "k3y" * 8


def _no_system(example: dict) -> None:
    from ftmanager.data.export import CannotHold

    if any(m.get("role") == "system" for m in example["messages"]):
        raise CannotHold("acme takes no system messages")


def _readme_backend() -> type:
    """The minimal subclass the README's Development section shows, run as it is printed."""
    text = (Path(__file__).parent.parent / "README.md").read_text()
    code = re.search(r"```python\n(from ftmanager.backend import Progress, Rules\n.*?)```", text, re.S).group(1)
    scope: dict = {}
    exec(compile(code, "README.md", "exec"), scope)
    return scope["AcmeBackend"]


class AcmeBackend(_readme_backend()):
    """The README's backend, with rules that refuse something (its own accept every example)."""

    data_rules = Rules(min_examples=15, max_bytes=None, holds=_no_system)


server = served(standin, speed=40)


@pytest.fixture
def env(server, monkeypatch):
    registry.register(AcmeBackend)
    yield aimed(server, monkeypatch, {"ACME_BASE_URL": server.url, "ACME_API_KEY": KEY, "FTM_POLL_SCALE": "0.01"})
    registry._registered.pop("acme", None)


def chats(path, n: int, system: bool = False):
    head = [{"role": "system", "content": "Be brief."}] if system else []
    rows = [{"messages": head + [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": f"a{i}"}]}
            for i in range(n)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_a_minimal_subclass_runs_a_job_uploading_once(env, tmp_path):
    spec, uploads = make_spec(tmp_path), MemoryUploads()
    backend = AcmeBackend()
    first = backend.start(spec, uploads)
    assert follow(backend, first)[-1].result_model.startswith(f"ft:{MODEL}:")
    files = env.requests[("POST", "/files")]
    backend.start(spec, uploads)  # the same data at the same account: no second upload
    assert env.requests[("POST", "/files")] == files == 1
    assert backend.account == env.url and backend.estimate_cost(spec, 1_000_000) == 3.0  # models.toml's price


def test_submit_and_validate_apply_the_backends_own_data_rules(env, tmp_path, ftm_home):
    from ftmanager import data

    bad = chats(tmp_path / "bad.jsonl", 12, system=True)
    with pytest.raises(InvalidInput, match=r"--provider acme`"):
        jobs.submit(str(bad), "acme", MODEL)
    few = data.validate(chats(tmp_path / "few.jsonl", 2), model=MODEL, provider="acme")
    assert "2 example(s); acme needs at least 15" in few.render()
    run = jobs.submit(str(chats(tmp_path / "good.jsonl", 16)), "acme", MODEL, wait=True)
    assert run["status"] == "succeeded" and run["result_model"].startswith("ft:")


def test_rules_of_unknown_names_list_every_backend_that_declares_some(env):
    from ftmanager.data.providers import rules

    assert rules("acme") is AcmeBackend.data_rules
    with pytest.raises(InvalidInput) as caught:
        rules("openai")  # a backend that declares none
    assert caught.value.next_step == "Choose one of: acme, fireworks, together."


def test_one_client_per_setting_and_a_missing_key_is_refused(env, monkeypatch):
    first = AcmeBackend().client
    assert AcmeBackend().client is first  # jobs.py makes a backend per poll: one client serves them all
    monkeypatch.setenv("ACME_API_KEY", KEY + "2")
    assert AcmeBackend().client is not first
    monkeypatch.delenv("ACME_API_KEY")
    with pytest.raises(Refused) as caught:
        AcmeBackend().client
    assert (caught.value.what, caught.value.next_step) == (
        "no Acme API key: ACME_API_KEY is not set", "Set ACME_API_KEY, or run `ftm standin` and point ACME_BASE_URL at it.")


def test_the_sdks_errors_become_ftms(env):
    env.faults.add("401", "GET", "/fine_tuning/jobs/ftjob-nope")
    with pytest.raises(Refused, match=r"Acme rejected the API key read from ACME_API_KEY \(401 at http"):
        AcmeBackend().poll("ftjob-nope", {})
    with pytest.raises(NotFound, match="Acme has no such object"):
        AcmeBackend().poll("ftjob-nope", {})


@pytest.mark.parametrize("text", ["0", "-2", "many", "inf"])
def test_environment_numbers_must_be_positive(monkeypatch, text):
    monkeypatch.setenv("FTM_TEST_NUMBER", text)
    with pytest.raises(InvalidInput) as caught:
        env_number("FTM_TEST_NUMBER", 1.0, float)
    assert (caught.value.what, caught.value.next_step) == (
        f"FTM_TEST_NUMBER must be a positive number, not {text!r}", "Fix or unset FTM_TEST_NUMBER.")
