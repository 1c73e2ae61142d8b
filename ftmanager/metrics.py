"""Text-similarity metrics, each computed one way, used by `ftm eval`'s scores and by the
text_similarity graders alike. Each is a function (given, reference) -> float in [0, 1].

ROUGE is Google's rouge-score; BLEU and chrF are sacrebleu's; all import late.
"""

from __future__ import annotations

import re
from collections import Counter

_WORD = re.compile(r"\w+", re.UNICODE)


def words(text: str) -> list[str]:
    """Lower-cased word tokens, in any script: what ftm eval's word scores compare."""
    return _WORD.findall(text.lower())


class _Words:
    """words() in rouge-score's tokenizer shape (its own keeps only ASCII letters and digits)."""

    @staticmethod
    def tokenize(text: str) -> list[str]:
        return words(text)


def token_f1(given: str, reference: str) -> float:
    """Word overlap F1 with the reference."""
    out, ref = words(given), words(reference)
    if not out or not ref:
        return float(out == ref)
    common = sum((Counter(out) & Counter(ref)).values())
    if not common:
        return 0.0
    precision, recall = common / len(out), common / len(ref)
    return 2 * precision * recall / (precision + recall)


def rouge(kind: str, given: str, reference: str, tokenizer=None) -> float:
    """rouge-score's F-measure of kind (rougeL, rouge1..rouge5) with its own tokenizer by default."""
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer([kind], tokenizer=tokenizer).score(reference, given)[kind].fmeasure


def rouge_l(given: str, reference: str) -> float:
    """ROUGE-L F1 over words() (any script); two empty texts agree fully."""
    if not words(given) or not words(reference):
        return float(words(given) == words(reference))
    return rouge("rougeL", given, reference, _Words)


def sentence_bleu(given: str, reference: str) -> float:
    """Sentence BLEU (sacrebleu, effective order so short answers are not zeroed)."""
    from sacrebleu.metrics import BLEU

    return BLEU(effective_order=True).sentence_score(given, [reference]).score / 100.0


def corpus_bleu(outputs: list[str], references: list[str]) -> float:
    """BLEU over a whole held-out set, as papers report it."""
    from sacrebleu.metrics import BLEU

    return BLEU().corpus_score(outputs, [references]).score / 100.0


def chrf(given: str, reference: str) -> float:
    """sacrebleu's character n-gram F-score."""
    from sacrebleu.metrics import CHRF

    return CHRF().sentence_score(given, [reference]).score / 100.0


def fuzzy(given: str, reference: str) -> float:
    """rapidfuzz's normalized edit similarity."""
    from rapidfuzz import fuzz

    return fuzz.ratio(given, reference) / 100.0


def gleu(given: str, reference: str) -> float:
    """NLTK's sentence GLEU over whitespace-split words."""
    from nltk.translate.gleu_score import sentence_gleu

    return sentence_gleu([reference.split()], given.split())
