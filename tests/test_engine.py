"""The inference engine contract (ftmanager/engine.py): engines are found through the
`ftm.engines` entry points like a third party's, and serve turns any engine's errors into
OpenAI's. A hostile engine plugin (tests/plugins/ftm_echo_engine.py) stands in for a second one."""

from __future__ import annotations

import pytest

from ftmanager import engine
from ftmanager.asks import Ask, Done, Piece
from ftmanager.errors import InvalidInput, NotFound
from ftmanager.front.state import ApiError
from ftmanager.serve.answers import answer


def ask(text: str) -> Ask:
    return Ask(None, [{"role": "user", "content": text}])


def test_engines_are_found_through_their_entry_points():
    assert type(engine.get()).__module__ == "ftm_backends.local.engine"  # the default, named nowhere in core
    echo = engine.get("echo")
    assert type(echo).__module__ == "ftm_echo_engine" and engine.get("echo") is echo  # loaded once
    items = list(echo.pool().stream(ask("two words")))
    assert [type(i) for i in items] == [Piece, Piece, Done] and items[-1].text == "two words "


def test_an_unknown_engine_is_one_line_naming_the_ones_there_are():
    with pytest.raises(NotFound) as err:
        engine.get("vllm")
    line = err.value.line()
    assert "no engine called 'vllm'" in line and "echo" in line and "local" in line and "\n" not in line


def test_serve_answers_a_too_long_prompt_from_any_engine_in_openais_words():
    pool = engine.get("echo").pool()
    with pytest.raises(ApiError) as err:
        list(answer(pool, "echo", ask("word " * 20)))
    assert (err.value.status, err.value.code, err.value.param) == (400, "context_length_exceeded", "messages")
    assert "context is 40" in err.value.message


def test_an_engine_that_cannot_load_never_shows_its_paths():
    with pytest.raises(ApiError) as err:
        list(answer(engine.get("echo").pool(), "broken", ask("hi")))
    assert (err.value.status, err.value.code) == (400, "model_not_available") and "/secret" not in err.value.message


def test_the_local_engine_checks_devices_and_knows_the_model_it_ships():
    local = engine.get()
    assert local.check_device(" CUDA:1 ") == "cuda:1" and local.check_device("auto") == "auto"
    with pytest.raises(InvalidInput, match="no device called 'tpu'"):
        local.check_device("tpu")
    assert local.ships("smollm2") and not local.ships("gpt2") and not local.ships("./smollm2")
