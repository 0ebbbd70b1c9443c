"""Answer scoring for question answering: SQuAD v1.1 exact match and token F1, "contains", token recall.

SQuAD's metrics are kept exactly (same normalization, same F1) so numbers are comparable with published
results. "contains" and token recall are the lenient scores for a small model that answers in a sentence
rather than a span: "contains" asks for the whole gold in order, token recall gives partial credit per gold
token (the share of the gold's tokens the answer has).
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

_PUNCTUATION = frozenset(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")
# End-of-turn / end-of-text markers of common chat templates; anything after one is not part of the answer.
_SPECIAL_TOKEN = re.compile(r"<\|[^|<>\s]*\|>|</s>|<eos>|<end_of_turn>")


def normalize_answer(text: str) -> str:
    """SQuAD v1.1 normalization: lowercase, drop punctuation, drop articles, collapse whitespace."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in _PUNCTUATION)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def _exact_match_one(pred: str, gold: str) -> float:
    return float(normalize_answer(pred) == normalize_answer(gold))


def _f1_one(pred: str, gold: str) -> float:
    pred_tokens = normalize_answer(pred).split()
    gold_tokens = normalize_answer(gold).split()
    num_same = sum((Counter(pred_tokens) & Counter(gold_tokens)).values())
    if num_same == 0:
        return 0.0
    precision = num_same / len(pred_tokens)
    recall = num_same / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def _contains_one(pred: str, gold: str) -> float:
    norm_gold = normalize_answer(gold)
    if not norm_gold:
        # An empty gold is a substring of everything; counting it would reward any answer.
        return 0.0
    # Padding with spaces makes the match token-aligned: "art" must not match inside "party".
    return float(f" {norm_gold} " in f" {normalize_answer(pred)} ")


def _recall_one(pred: str, gold: str) -> float:
    gold_tokens = normalize_answer(gold).split()
    if not gold_tokens:
        return 0.0  # as for "contains": an empty gold would be recalled by any answer
    num_same = sum((Counter(normalize_answer(pred).split()) & Counter(gold_tokens)).values())
    return num_same / len(gold_tokens)


def exact_match(pred: str, golds: Sequence[str]) -> float:
    """1.0 if the normalized prediction equals any normalized gold answer."""
    return max((_exact_match_one(pred, g) for g in golds), default=0.0)


def token_f1(pred: str, golds: Sequence[str]) -> float:
    """SQuAD token-overlap F1, the best over the gold answers."""
    return max((_f1_one(pred, g) for g in golds), default=0.0)


def contains_answer(pred: str, golds: Sequence[str]) -> float:
    """1.0 if some non-empty normalized gold occurs as a whole-token run inside the normalized prediction."""
    return max((_contains_one(pred, g) for g in golds), default=0.0)


def token_recall(pred: str, golds: Sequence[str]) -> float:
    """Share of the normalized gold's tokens found in the normalized prediction (multiset overlap / gold
    length, order ignored, extra words not penalized), the best over the gold answers."""
    return max((_recall_one(pred, g) for g in golds), default=0.0)


@dataclass(frozen=True)
class Scores:
    exact_match: float
    f1: float
    contains: float
    token_recall: float

    @classmethod
    def mean(cls, items: Sequence[Scores]) -> Scores:
        """Per-metric mean; an empty batch scores zero rather than raising."""
        if not items:
            return cls(0.0, 0.0, 0.0, 0.0)
        n = len(items)
        return cls(
            exact_match=sum(s.exact_match for s in items) / n,
            f1=sum(s.f1 for s in items) / n,
            contains=sum(s.contains for s in items) / n,
            token_recall=sum(s.token_recall for s in items) / n,
        )


def score_answer(pred: str, golds: Sequence[str]) -> Scores:
    """All four metrics for one prediction."""
    return Scores(
        exact_match=exact_match(pred, golds),
        f1=token_f1(pred, golds),
        contains=contains_answer(pred, golds),
        token_recall=token_recall(pred, golds),
    )


def clean_answer(raw: str) -> str:
    """The answer part of a raw generation: the first line, without special tokens or surrounding space.

    Leading whitespace is dropped first so that a generation starting with a newline keeps its answer.
    A special token ends the answer like a newline does, since the model has ended its turn there.
    """
    text = raw.lstrip()
    text = text.split("\n", 1)[0]
    match = _SPECIAL_TOKEN.search(text)
    if match is not None:
        text = text[: match.start()]
    return text.strip()
