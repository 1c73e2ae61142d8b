"""A hostile or misbehaving Fireworks, and careless DPO submits to it: pairs Fireworks' DPO would
refuse and a beta it does not take are one line before anything is uploaded; a job id taken on
another dataset is refused; a dpoJob that fails says why; the stand-in answers an SFT dataset, an
unnamed loss and a bad beta with 400s in the gateway's shape; garbage for a job is one line."""

from __future__ import annotations

import json
import re
import time

import fireworks
import pytest
import sdk_backends as kit
from conftest import ftm
from sdk_backends import MemoryUploads, aimed, follow, make_spec, preferences, served

from ftm_backends.fireworks import FireworksBackend, job_id_for
from ftmanager.errors import BackendError, Refused
from ftmanager.standin import fireworks_dpo, standin

KEY, ACCOUNT = "fw-doors-" + "k3y" * 8, "acme"
MODEL = "accounts/fireworks/models/llama-v3p1-8b-instruct"
server = served(standin, speed=40, provider="fireworks")


@pytest.fixture
def env(server, monkeypatch):
    return aimed(server, monkeypatch, {"FIREWORKS_BASE_URL": server.url, "FIREWORKS_API_KEY": KEY,
                                       "FIREWORKS_ACCOUNT_ID": ACCOUNT}, unset=("FTM_POLL_SCALE",))


def pair_spec(tmp_path, offset: int = 0, broken=None, **fields):
    """A DPO run's spec on fresh pairs (broken(rows) spoils them past ftm's own checks)."""
    spec = make_spec(tmp_path, offset=offset, base_model=MODEL, hyperparameters={"method": "dpo", "beta": 0.1}, **fields)
    rows = [json.loads(line) for line in preferences(spec.training_file, offset=offset).read_text().splitlines()]
    if broken:
        broken(rows)
    spec.training_file.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return spec


def client():
    return fireworks.Fireworks(api_key=KEY, account_id=ACCOUNT, base_url=FireworksBackend().where, max_retries=0)


def ready(fw, ds_id: str, body: bytes, n: int = 12) -> str:
    fw.datasets.create(dataset_id=ds_id, dataset={"example_count": str(n), "user_uploaded": {}})
    fw.datasets.upload(ds_id, file=(f"{ds_id}.jsonl", body, "application/jsonl"))
    while fw.datasets.get(ds_id).state != "READY":
        time.sleep(0.02)
    return f"accounts/{ACCOUNT}/datasets/{ds_id}"


def test_pairs_and_settings_fireworks_refuses_are_one_line_before_any_upload(env, tmp_path, ftm_home):
    rows = [json.loads(line) for line in preferences(tmp_path / "p.jsonl").read_text().splitlines()]
    rows[4]["input"]["messages"][0]["content"] = [{"type": "text", "text": "parts"}]
    bad = tmp_path / "parts.jsonl"
    bad.write_text("".join(json.dumps(r) + "\n" for r in rows))
    good = preferences(tmp_path / "good.jsonl")
    for args, said in (([bad], ".jsonl:5: fireworks: message 1 has non-text content, which fireworks' DPO input cannot hold"),
                       ([good, "--beta", "0.7"], "Fireworks' DPO takes beta above 0 and below 0.5, not 0.7"),
                       ([good, "--split", "0.25"], "Fireworks' DPO jobs take no validation set")):
        result = ftm("submit", *args, "-b", "fireworks", "--method", "dpo")
        lines = result.err.strip().splitlines()
        assert result.code == 1 and len(lines) == 1 and lines[0].startswith("Error: ") and said in lines[0], result
    assert env.requests[("POST", f"/accounts/{ACCOUNT}/datasets")] == 0 and env.requests[("POST", f"/accounts/{ACCOUNT}/dpoJobs")] == 0
    assert ftm("runs", "--json").json() == []


DPO = kit.Hosted(FireworksBackend, fireworks.InternalServerError, ("POST", f"/accounts/{ACCOUNT}/dpoJobs"),
                 lambda srv, run_id: [k for k in srv.state.jobs if k == f"dpoJobs/{job_id_for(run_id)}"])


@kit.each_create_fault(kit.lost_answer_leaves_one_job, kit.failing_create_is_no_refusal)
def test_one_dpo_job_per_run_whatever_happens_to_the_create(env, tmp_path, check):
    check(DPO, env, pair_spec(tmp_path, offset=700))  # find() asks the dpoJobs resource too


def test_a_dpo_job_id_taken_on_another_dataset_is_refused(env, tmp_path):
    spec = pair_spec(tmp_path, offset=300)
    other = ready(client(), "someone-elses", preferences(tmp_path / "other.jsonl", offset=900).read_bytes())
    client().dpo_jobs.create(dpo_job_id=job_id_for(spec.run_id), dataset=other, training_config={"base_model": MODEL})
    with pytest.raises(Refused, match=f"already has a job dpoJobs/{job_id_for(spec.run_id)} on another dataset"):
        FireworksBackend().start(spec, MemoryUploads())


def test_a_dpo_job_fireworks_fails_reports_why(env, tmp_path):
    def tool_turn(rows):  # a tool message in the input: past OpenAI's shape, not Fireworks' DPO rules
        rows[2]["input"]["messages"].append({"role": "tool", "content": "42", "tool_call_id": "c1"})

    backend = FireworksBackend()
    job_id = backend.start(pair_spec(tmp_path, offset=400, broken=tool_turn), MemoryUploads())
    last = follow(backend, job_id)[-1]
    assert last.status == "failed" and last.error["message"].startswith("Invalid DPO dataset: line 3: input.messages[2]")
    assert "role 'tool' is not one of system, user, assistant" in last.error["message"]


def test_the_stand_in_answers_bad_dpo_jobs_with_the_gateways_400(env, tmp_path):
    fw = client()
    chat = "".join(json.dumps({"messages": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": "a"}]})
                   + "\n" for i in range(12)).encode()
    chats = ready(fw, "chats", chat)
    pairs = ready(fw, "pairs", preferences(tmp_path / "pairs.jsonl", offset=500).read_bytes())
    for dataset, extra, why in (
            (chats, {}, re.escape("holds chat examples (messages), but a DPO job trains on preference pairs")),
            (pairs, {"loss_config": {"dpo": {"beta": 0.1}}}, "lossConfig.method GRPO trains on prompts and a reward"),
            (pairs, {"loss_config": {"method": "DPO", "dpo": {"beta": 0.5}}}, "lossConfig.dpo.beta must be above 0 and below 0.5"),
            (pairs, {"training_config": {"base_model": MODEL, "epochs": 0}}, "trainingConfig.epochs must be a whole number")):
        with pytest.raises(fireworks.BadRequestError, match=why) as caught:
            fw.dpo_jobs.create(dataset=dataset, **{"training_config": {"base_model": MODEL}, **extra})
        assert set(caught.value.body) == {"code", "message", "details"} and caught.value.body["code"] == 3
    with pytest.raises(fireworks.BadRequestError, match=r"holds preference pairs \(.*\), but a supervised fine-tuning job"):
        fw.supervised_fine_tuning_jobs.create(dataset=pairs, base_model=MODEL)
    with pytest.raises(fireworks.NotFoundError):
        fw.dpo_jobs.get("never-made")


@pytest.mark.parametrize("garbage", [[1, 2], {"name": 7, "state": "JOB_STATE_RUNNING"}, {"name": "x", "state": 42},
                                     {"name": "x", "lossConfig": [1], "dataset": "d"}])
def test_garbage_for_a_dpo_job_is_one_line(env, tmp_path, garbage):
    backend = FireworksBackend()
    job_id = backend.start(pair_spec(tmp_path, offset=600), MemoryUploads())
    original = env.routes
    env.routes = [(m, p, (lambda srv, req: garbage) if fn is fireworks_dpo.get_job else fn, lock)
                  for m, p, fn, lock in original]
    try:
        with pytest.raises(BackendError, match="Fireworks answered with something that is no DPO job"):
            backend.poll(job_id, {})
    finally:
        env.routes = original
    assert follow(backend, job_id)[-1].status == "succeeded"  # the provider came back to its senses
