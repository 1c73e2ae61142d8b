"""The model pool: one tiny base in memory, LoRA adapters per request, continuous batching.

Answers are checked against plain transformers `generate` (greedy, token for token) on a
tiny Llama with real peft adapters. Its output layer gives the end-of-turn token a logit of 0,
which some other token always beats: answers end only where a test says, so lengths are exact.
"""

from __future__ import annotations

import threading
import time

import pytest

from fixtures_local import tiny_gpt2, tiny_llama  # noqa: F401  (fixtures; sets passive OpenMP first)

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
peft = pytest.importorskip("peft")

from ftm_backends.local.engine.pool import Ask, Done, Piece, Pool  # noqa: E402
from ftm_backends.local.modeling.encoding import prompt_text  # noqa: E402
from ftm_backends.local.modeling.loading import Target  # noqa: E402
from ftmanager.engine import PromptTooLong  # noqa: E402
from ftmanager.errors import InvalidInput, NotFound  # noqa: E402


def user(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


def make_adapter(base, path, seed: int, **config):
    """A real LoRA adapter with random (non-zero) weights, saved as peft saves one."""
    torch.manual_seed(seed)
    model = transformers.AutoModelForCausalLM.from_pretrained(base)
    lora = peft.LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", init_lora_weights=False, **config)
    peft.get_peft_model(model, lora).save_pretrained(path)
    return str(path)


def endless(tiny, path):
    """The tiny Llama with its own output layer, where the end-of-turn token's row is zero."""
    model = transformers.AutoModelForCausalLM.from_pretrained(tiny)
    model.config.tie_word_embeddings = False
    model.lm_head.weight = torch.nn.Parameter(model.lm_head.weight.detach().clone())
    model.lm_head.weight.data[model.config.eos_token_id] = 0.0
    return save(model, tiny, path)


def save(model, tiny, path) -> str:
    model.save_pretrained(path)
    transformers.AutoTokenizer.from_pretrained(tiny).save_pretrained(path)
    return str(path)


@pytest.fixture(scope="module")
def models(tiny_llama, tmp_path_factory):  # noqa: F811
    """The endless base, two adapters on it, and a fully tuned model (the first adapter merged in)."""
    tmp = tmp_path_factory.mktemp("pool")
    base = endless(tiny_llama, tmp / "base")
    a, b = make_adapter(base, tmp / "a", 1), make_adapter(base, tmp / "b", 2)
    merged = peft.PeftModel.from_pretrained(transformers.AutoModelForCausalLM.from_pretrained(base), a)
    return {"base": Target(base), "a": Target(base, a), "b": Target(base, b),
            "merged": Target(save(merged.merge_and_unload(), tiny_llama, tmp / "merged"))}


@pytest.fixture(scope="module")
def pool():
    p = Pool(device="cpu", max_batch=4, prefill_tokens=64)
    yield p
    p.close()


def plain(target: Target, messages: list[dict], n: int) -> str:
    """What plain transformers answers: generate() greedy on the base, the PeftModel or the full model."""
    return generated(target, messages, n)[0]


def generated(target: Target, messages: list[dict], n: int, merged: bool = False) -> tuple[str, int]:
    """generate()'s greedy text and how many tokens it made before the end-of-turn token."""
    tok = transformers.AutoTokenizer.from_pretrained(target.base)
    model = transformers.AutoModelForCausalLM.from_pretrained(target.base).eval()
    if target.adapter:
        model = peft.PeftModel.from_pretrained(model, target.adapter).eval()
    if merged:
        model = model.merge_and_unload()
    ids = tok(prompt_text(tok, messages, target.template), return_tensors="pt", add_special_tokens=False)
    with torch.no_grad():
        out = model.generate(**ids, max_new_tokens=n, do_sample=False, pad_token_id=tok.eos_token_id)
    out = out[0, ids["input_ids"].shape[1]:]
    return tok.decode(out, skip_special_tokens=True), len([t for t in out.tolist() if t != tok.eos_token_id])


def pieces(stream) -> tuple[list[Piece], Done]:
    items = list(stream)
    assert isinstance(items[-1], Done) and all(isinstance(i, Piece) for i in items[:-1])
    return items[:-1], items[-1]


def test_each_model_answers_token_for_token_as_plain_generate(pool, models, tiny_llama):  # noqa: F811
    for name, target in models.items():
        done = pool.answers([Ask(target, user("q1"), max_tokens=24)])[0]
        assert done.text == plain(target, user("q1"), 24), name
        assert (done.completion_tokens, done.finish_reason) == (24, "length")
    assert pool.loaded()[models["base"].base] == [models["a"].adapter, models["b"].adapter]
    ends = Target(str(tiny_llama))  # the tied original, which ends this answer itself (after 78 tokens here)
    done = pool.answers([Ask(ends, user("q1"), max_tokens=100)])[0]
    assert (done.text, done.completion_tokens) == generated(ends, user("q1"), 100)
    assert done.finish_reason == ("stop" if done.completion_tokens < 100 else "length")


def test_a_batch_with_an_adapter_per_row_answers_each_as_it_would_alone(pool, models):
    asks = [Ask(models[name], user(q), max_tokens=n)
            for name, q, n in [("a", "q1", 20), ("base", "hello there", 12), ("b", "q22", 30), ("a", "hi", 16)]]
    alone = [pool.answers([ask])[0].text for ask in asks]
    before = pool.stats()["step_sizes"][4]
    together = pool.answers(asks)
    assert [d.text for d in together] == alone
    assert [d.completion_tokens for d in together] == [20, 12, 30, 16]
    assert pool.stats()["step_sizes"][4] > before  # four rows, three adapters, one step


def test_one_adapter_asked_for_again_is_merged_and_the_base_comes_back_bit_for_bit(models):
    pool = Pool(device="cpu")
    try:
        def answer(name: str, q: str, **kw) -> Done:
            return pool.answers([Ask(models[name], user(q), max_tokens=16, **kw)])[0]

        before = [e["logprob"] for p in pool.stream(Ask(models["base"], user("q0"), max_tokens=16, logprobs=True))
                  if isinstance(p, Piece) for e in p.logprobs]
        first = [answer("a", f"q{i}").text for i in range(1, 4)]
        assert first[0] == plain(models["a"], user("q1"), 16) and pool.stats()["merges"] == 0  # peft's arithmetic
        assert answer("a", "q4").text == plain(models["merged"], user("q4"), 16)  # the 4th: merge_and_unload's
        assert pool.stats()["merges"] == 1
        assert answer("b", "q6").text == plain(models["b"], user("q6"), 16)
        after = [e["logprob"] for p in pool.stream(Ask(models["base"], user("q0"), max_tokens=16, logprobs=True))
                 if isinstance(p, Piece) for e in p.logprobs]
        assert after == before  # the same floats: the base weights were restored, not subtracted back
        for i in range(8):  # after a restore, a merge waits for twice as long a run
            answer("a", f"q{i}")
            assert pool.stats()["merges"] == 1 + (i == 7)
    finally:
        pool.close()


def test_the_only_adapter_ever_asked_for_is_merged_at_once(models):
    pool = Pool(device="cpu")  # as `ftm chat` and `ftm eval` of one run use theirs
    try:
        done = pool.answers([Ask(models["a"], user("q7"), max_tokens=16)])[0]
        assert pool.stats()["merges"] == 1 and done.text == plain(models["merged"], user("q7"), 16)
    finally:
        pool.close()


def test_no_merge_while_rows_of_another_adapter_run(models):
    pool = Pool(device="cpu")
    try:
        long = pool.stream(Ask(models["b"], user("go on")))  # up to the context: about a thousand tokens
        next(long)
        merges = pool.stats()["merges"]  # b, the only adapter asked for yet, is merged
        for i in range(9):  # a run for one adapter long enough to earn a merge (8, after the restore for it)
            assert pool.answers([Ask(models["a"], user(f"q{i}"), max_tokens=4)])[0].completion_tokens == 4
        assert pool.stats()["merges"] == merges == 1  # merging a would mean restoring for b at each step
        long.close()
    finally:
        pool.close()


def test_gpt2_with_an_adapter_on_its_transposed_layers_and_a_prompt_format(tiny_gpt2, tmp_path):  # noqa: F811
    tuned = Target(str(tiny_gpt2), make_adapter(tiny_gpt2, tmp_path / "gpt2-lora", 3), "alpaca")
    base = Target(str(tiny_gpt2), None, "alpaca")
    on_tuned, on_base = Ask(tuned, user("q1"), max_tokens=12), Ask(base, user("q2"), max_tokens=12)
    # The base asked for first: the adapter is never the only one asked for, so it runs unmerged
    # whatever the timing; asked for alone, it is merged at once.
    for asks, merged in (([on_base, on_tuned], False), ([on_tuned], True)):
        pool = Pool(device="cpu")
        try:
            done = pool.answers(asks)
            assert pool.stats()["merges"] == merged
        finally:
            pool.close()
        assert [(d.text, d.completion_tokens) for d in done] == [
            generated(ask.target, ask.messages, 12, merged) for ask in asks]


def test_a_newcomer_joins_the_running_batch_and_leaves_it_first(pool, models):
    long = pool.stream(Ask(models["a"], user("tell me"), max_tokens=600))
    assert isinstance(next(long), Piece)  # the long answer is running
    together = pool.stats()["step_sizes"][2]
    short = pieces(pool.stream(Ask(models["b"], user("q3"), max_tokens=5)))[1]
    assert short.completion_tokens == 5
    assert pool.stats()["step_sizes"][2] - together >= 4  # its tokens after the first came in steps with the long one
    rest, done = pieces(long)
    assert done.completion_tokens == 600 and "".join(p.text for p in rest)  # which went on without it


def test_max_tokens_and_the_prompt_are_capped_at_the_context(pool, models):
    context = 1024  # the tiny Llama's max_position_embeddings
    with pytest.raises(PromptTooLong, match="context is 1024"):
        next(pool.stream(Ask(models["a"], user("x" * 1100))))
    done = pool.answers([Ask(models["a"], user("y" * 990))])[0]  # max_tokens None: up to the context
    assert done.finish_reason == "length" and done.prompt_tokens + done.completion_tokens == context
    capped = pool.answers([Ask(models["b"], user("y" * 990), max_tokens=500)])[0]
    assert capped.prompt_tokens + capped.completion_tokens == context and capped.completion_tokens < 500


def test_a_long_prompt_is_read_in_chunks_and_answers_as_plain_generate(pool, models):
    question = user("what is " * 30)  # ~250 tokens: four chunks of 64
    done = pool.answers([Ask(models["b"], question, max_tokens=16)])[0]
    assert done.text == plain(models["b"], question, 16)


def test_closing_the_iterator_stops_that_row(pool, models):
    before = _steps_when_idle(pool)
    stream = pool.stream(Ask(models["base"], user("go on"), max_tokens=900))
    next(stream), next(stream)
    stream.close()
    assert _steps_when_idle(pool) - before < 200  # of the 900 tokens asked for
    assert pool.answers([Ask(models["base"], user("next"), max_tokens=3)])[0].completion_tokens == 3


def _steps_when_idle(pool, quiet: float = 0.3) -> int:
    seen = -1
    while (now := sum(pool.stats()["step_sizes"].values())) != seen:
        seen = now
        time.sleep(quiet)
    return now


def test_stop_sequences_end_the_answer_before_them(pool, models):
    full = pool.answers([Ask(models["a"], user("q5"), max_tokens=30)])[0].text
    stop, later = full[10:13], full[20:22]
    parts, done = pieces(pool.stream(Ask(models["a"], user("q5"), max_tokens=30, stop=(later, stop))))
    assert done.text == full[: min(full.index(stop), full.index(later))] == "".join(p.text for p in parts)
    assert done.finish_reason == "stop" and stop not in done.text
    unmatched = pool.answers([Ask(models["a"], user("q5"), max_tokens=30, stop=("\x00",))])[0]
    assert unmatched.text == full and unmatched.finish_reason == "length"


def test_sampling_follows_seed_temperature_and_top_p(pool, models):
    def answer(**kw):
        return pool.answers([Ask(models["a"], user("q9"), max_tokens=20, **kw)])[0].text

    greedy = answer()
    assert answer(temperature=1.0, seed=3) == answer(temperature=1.0, seed=3)
    assert len({answer(temperature=1.0, seed=s) for s in range(4)} | {greedy}) > 2
    assert answer(temperature=1.0, top_p=1e-6, seed=4) == greedy  # only the most likely token is left


def test_logprobs_come_in_openais_shape_with_each_piece(pool, models):
    parts, done = pieces(pool.stream(Ask(models["b"], user("q2"), max_tokens=12, logprobs=True, top_logprobs=3)))
    entries = [e for p in parts for e in p.logprobs]
    assert len(entries) == done.completion_tokens == 12
    assert "".join(e["token"] for e in entries) == done.text
    for e in entries:
        assert set(e) == {"token", "logprob", "bytes", "top_logprobs"} and e["bytes"] == list(e["token"].encode())
        best = e["top_logprobs"]
        assert len(best) == 3 and best[0]["token"] == e["token"] and best[0]["logprob"] == e["logprob"] <= 0
        assert best[0]["logprob"] >= best[1]["logprob"] >= best[2]["logprob"]
    assert pool.answers([Ask(models["b"], user("q2"), max_tokens=3)])[0].text == done.text[:3]


def test_a_bad_adapter_fails_its_own_request_only(pool, models, tmp_path, tiny_llama):  # noqa: F811
    dora = Target(str(tiny_llama), make_adapter(tiny_llama, tmp_path / "dora", 5, use_dora=True))
    missing = Target(str(tiny_llama), str(tmp_path / "nowhere"))
    good = pool.stream(Ask(models["a"], user("q1"), max_tokens=24))
    first = next(good)
    with pytest.raises(InvalidInput, match="not a plain LoRA adapter"):
        next(pool.stream(Ask(dora, user("q1"))))
    with pytest.raises(NotFound, match="no LoRA adapter"):
        next(pool.stream(Ask(missing, user("q1"))))
    assert first.text and pieces(good)[1].text == plain(models["a"], user("q1"), 24)


def test_many_threads_stream_at_once(pool, models):
    names = ["a", "b", "base", "merged"] * 3
    results: dict[int, str] = {}

    def ask(i: int) -> None:
        results[i] = pieces(pool.stream(Ask(models[names[i]], user(f"q{i}"), max_tokens=8 + i)))[1].text

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(len(names))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert [results[i] for i in range(len(names))] == [
        pool.answers([Ask(models[n], user(f"q{i}"), max_tokens=8 + i)])[0].text for i, n in enumerate(names)]
