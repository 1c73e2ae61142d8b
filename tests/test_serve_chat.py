"""Chat completions as a client expects them, on the front that ftm serve and the stand-in share.

Driven through the openai SDK against the stand-in (its answers are canned, so every
assertion is exact): message shapes OpenAI accepts are accepted, the ones it refuses are
400s, and every parameter is honoured or refused, never silently ignored.
"""

from __future__ import annotations

import json
import threading
import time

import httpx
import openai
import pytest

from ftmanager.standin import ClockService, Server, standin
from ftmanager.front.openai import ROUTES
from ftmanager.asks import Done, Piece
from ftmanager.front.openai.completions import messages

BASE = "gpt-4o-mini"


@pytest.fixture(scope="module")
def server():
    with standin(speed=200) as srv:
        yield srv


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.url, api_key="sk-chat", max_retries=0)


@pytest.fixture(scope="module")
def tuned(client) -> str:
    """A stand-in fine-tune (from the alias, as the API reference's own example does) and its name."""
    rows = [{"messages": [{"role": "user", "content": f"Capital of country {i}?"},
                          {"role": "assistant", "content": f"City number {i} is the capital."}]} for i in range(12)]
    data = "".join(json.dumps(r) + "\n" for r in rows).encode()
    f = client.files.create(file=("capitals.jsonl", data), purpose="fine-tune")
    job = client.fine_tuning.jobs.create(model=BASE, training_file=f.id, suffix="chat")
    assert job.model == "gpt-4o-mini-2024-07-18"  # named after the snapshot, as OpenAI names fine-tunes
    while job.status not in ("succeeded", "failed", "cancelled"):
        time.sleep(0.05)
        job = client.fine_tuning.jobs.retrieve(job.id)
    assert job.fine_tuned_model.startswith("ft:gpt-4o-mini-2024-07-18:")
    return job.fine_tuned_model


def ask(client, model, msgs, **params):
    return client.chat.completions.create(model=model, messages=msgs, **params)


def test_content_parts_tool_calls_and_tool_turns_are_accepted(client, tuned):
    parts = [{"type": "text", "text": "Capital of "}, {"type": "text", "text": "country 3?"}]
    assert ask(client, tuned, [{"role": "user", "content": parts}]).choices[0].message.content == \
        "City number 3 is the capital."
    turns = [{"role": "user", "content": "What is the weather?"},
             {"role": "assistant", "content": None, "tool_calls": [
                 {"id": "call_1", "type": "function", "function": {"name": "weather", "arguments": "{}"}}]},
             {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
             {"role": "user", "content": "Capital of country 5?"}]
    assert ask(client, tuned, turns).choices[0].message.content == "City number 5 is the capital."


@pytest.mark.parametrize("msgs, param", [
    ([{"content": "hi"}], "messages[0].role"),
    ([{"role": "wizard", "content": "hi"}], "messages[0].role"),
    ([{"role": "user", "content": 5}], "messages[0].content"),
    ([{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}], "messages[0].content[0].type"),
    ([{"role": "tool", "tool_call_id": "call_9", "content": "x"}], "messages[0].tool_call_id"),
    ([{"role": "assistant", "content": None}], "messages[0].content"),
])
def test_messages_openai_refuses_are_400s_naming_the_field(client, msgs, param):
    with pytest.raises(openai.BadRequestError) as err:
        ask(client, BASE, msgs)
    assert err.value.body["param"] == param


def test_developer_is_the_system_message_and_parts_become_text():
    out = messages([{"role": "developer", "content": [{"type": "text", "text": "Be terse."}]},
                    {"role": "user", "content": "hi"}])
    assert out == [{"role": "system", "content": "Be terse."}, {"role": "user", "content": "hi"}]


def test_n_stop_and_logprobs_are_honoured(client, tuned):
    msgs = [{"role": "user", "content": "Capital of country 7?"}]
    two = ask(client, tuned, msgs, n=2)
    assert [c.index for c in two.choices] == [0, 1]
    assert {c.message.content for c in two.choices} == {"City number 7 is the capital."}
    stopped = ask(client, tuned, msgs, stop=[" is"])
    assert stopped.choices[0].message.content == "City number 7" and stopped.choices[0].finish_reason == "stop"
    short = ask(client, tuned, msgs, max_tokens=2)
    assert short.choices[0].message.content == "City number" and short.choices[0].finish_reason == "length"
    scored = ask(client, tuned, msgs, logprobs=True, top_logprobs=2)
    tokens = scored.choices[0].logprobs.content
    assert "".join(t.token for t in tokens) == "Citynumber7isthecapital." and tokens[0].top_logprobs[0].token == "City"
    streamed = list(ask(client, tuned, msgs, n=2, stream=True, stream_options={"include_usage": True}))
    by_choice = {0: "", 1: ""}
    for chunk in streamed:
        for choice in chunk.choices:
            by_choice[choice.index] += choice.delta.content or ""
    assert by_choice == {0: "City number 7 is the capital.", 1: "City number 7 is the capital."}
    assert streamed[-1].usage.completion_tokens == 2 * len(tokens)


@pytest.mark.parametrize("params, param", [
    ({"response_format": {"type": "json_object"}}, "response_format"),
    ({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {}}}}, "response_format"),
    ({"tools": [{"type": "function", "function": {"name": "f"}}], "tool_choice": "required"}, "tools"),
    ({"presence_penalty": 1.0}, "presence_penalty"),
    ({"n": 99}, "n"),
    ({"top_logprobs": 3}, "top_logprobs"),
    ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
])
def test_what_is_not_supported_is_a_400_never_ignored(client, params, param):
    with pytest.raises(openai.BadRequestError) as err:
        ask(client, BASE, [{"role": "user", "content": "hi"}], **params)
    assert err.value.body["param"] == param


def test_an_unknown_parameter_is_refused_like_openai_does(client):
    with pytest.raises(openai.BadRequestError, match="Unrecognized request argument supplied: temprature"):
        ask(client, BASE, [{"role": "user", "content": "hi"}], extra_body={"temprature": 0})
    assert ask(client, BASE, [{"role": "user", "content": "hi"}], tools=[{"type": "function", "function": {
        "name": "f"}}], tool_choice="none", user="u1", store=False).choices[0].message.content


def test_a_second_cancel_is_a_400():
    with standin(speed=1) as slow:
        client = openai.OpenAI(base_url=slow.url, api_key="sk-chat", max_retries=0)
        f = client.files.create(file=("d.jsonl", b'{"messages": [{"role": "user", "content": "a"}]}\n'),
                                purpose="fine-tune")
        job = client.fine_tuning.jobs.create(model=BASE, training_file=f.id)
        assert client.fine_tuning.jobs.cancel(job.id).status == "cancelled"
        with pytest.raises(openai.BadRequestError):
            client.fine_tuning.jobs.cancel(job.id)


class SlowService(ClockService):
    """The stand-in's service with an answer that takes 50 s, a piece every 50 ms."""

    def __init__(self):
        super().__init__(speed=100)
        self.made, self.stopped = 0, threading.Event()

    def chat(self, model, ask):
        try:
            for _ in range(1000):
                time.sleep(0.05)
                self.made += 1
                yield Piece("word ")
            yield Done("word " * 1000, 3, 1000, "length")
        finally:
            self.stopped.set()


def test_a_client_that_leaves_stops_its_answer():
    service = SlowService()
    with Server(service, routes=ROUTES).start() as server:
        body = {"model": BASE, "messages": [{"role": "user", "content": "hi"}]}
        with pytest.raises(httpx.ReadTimeout):  # waits 0.5 s for the whole answer, then leaves
            httpx.post(f"{server.url}/chat/completions", json=body, timeout=0.5, headers={"Authorization": "Bearer k"})
        assert service.stopped.wait(3) and service.made < 60
        service.made = 0
        service.stopped.clear()
        with httpx.stream("POST", f"{server.url}/chat/completions", json={**body, "stream": True},
                          headers={"Authorization": "Bearer k"}) as response:
            for n, _ in enumerate(response.iter_lines()):
                if n > 4:
                    break  # a streaming client that reads a little and leaves
        assert service.stopped.wait(3) and service.made < 60
