"""SQuAD v1.1 metrics, the lenient "contains" score and raw-answer cleaning."""

from __future__ import annotations

import pytest

from seal_lab.scoring.textmetrics import (
    Scores,
    clean_answer,
    contains_answer,
    exact_match,
    normalize_answer,
    score_answer,
    token_f1,
    token_recall,
)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("The Blue Lantern", "blue lantern"),
        ("  an   Apple,  a day! ", "apple day"),
        ("Denver Broncos.", "denver broncos"),
        ("Theory of the atom", "theory of atom"),  # "the" inside "theory" is not an article
        ("A-B testing", "ab testing"),  # SQuAD deletes punctuation rather than splitting on it
        ('"golden anniversary"', "golden anniversary"),
        ("the", ""),
        ("", ""),
        ("Line\nbreak\ttab", "line break tab"),
    ],
)
def test_normalize_answer_follows_squad(raw: str, expected: str) -> None:
    assert normalize_answer(raw) == expected


def test_exact_match_normalizes_and_takes_best_gold() -> None:
    assert exact_match("The Denver Broncos!", ["Denver Broncos"]) == 1.0
    assert exact_match("Broncos", ["Denver Broncos"]) == 0.0
    assert exact_match("Carolina", ["Denver Broncos", "carolina"]) == 1.0
    assert exact_match("anything", []) == 0.0


def test_token_f1_known_values() -> None:
    # "the blue lantern" -> [blue, lantern]; gold -> [blue, lantern, series]; overlap 2.
    # precision 2/2, recall 2/3, F1 = 2 * 1 * (2/3) / (1 + 2/3) = 0.8
    assert token_f1("the blue lantern", ["blue lantern series"]) == pytest.approx(0.8)
    assert token_f1("blue lantern series", ["blue lantern series"]) == 1.0
    assert token_f1("red kite", ["blue lantern series"]) == 0.0
    # Repeated tokens count only as often as they occur in both: pred [a1 a1 b], gold [a1 b] -> overlap 2,
    # precision 2/3, recall 1, F1 = 0.8
    assert token_f1("x x y", ["x y"]) == pytest.approx(0.8)
    # Best gold wins: 0.8 against the first, 1.0 against the second.
    assert token_f1("blue lantern", ["blue lantern series", "the Blue Lantern"]) == 1.0
    assert token_f1("", ["gold"]) == 0.0
    assert token_f1("anything", []) == 0.0


def test_contains_answer_is_token_aligned() -> None:
    assert contains_answer("It was founded in 1978 by Alloway.", ["1978"]) == 1.0
    assert contains_answer("The winner was Ines Dalbrook.", ["Ines Dalbrook"]) == 1.0
    assert contains_answer("They had a party", ["art"]) == 0.0  # not inside another word
    assert contains_answer("In 19780", ["1978"]) == 0.0
    assert contains_answer("Dalbrook Ines", ["Ines Dalbrook"]) == 0.0  # order matters
    assert contains_answer("no idea", ["wrong", "idea"]) == 1.0


def test_contains_answer_never_counts_empty_gold() -> None:
    assert contains_answer("anything at all", [""]) == 0.0
    assert contains_answer("anything at all", ["the", "  "]) == 0.0  # empty after normalization
    assert contains_answer("", [""]) == 0.0
    assert contains_answer("anything", []) == 0.0


def test_token_recall_known_values() -> None:
    # gold "the Blue Lantern Series" -> [blue, lantern, series]; pred -> [it, was, blue, lantern]: 2 of 3.
    assert token_recall("It was the blue lantern.", ["the Blue Lantern Series"]) == pytest.approx(2 / 3)
    # Extra words cost nothing (unlike F1) and order does not matter (unlike "contains").
    assert token_recall("series, lantern and blue, said the keeper", ["Blue Lantern Series"]) == 1.0
    # Multiset overlap: gold [x, x, y] against pred [x, y] recalls 2 of 3; pred [x, x, x] recalls 2 of 3.
    assert token_recall("x y", ["x x y"]) == pytest.approx(2 / 3)
    assert token_recall("x x x", ["x x y"]) == pytest.approx(2 / 3)
    # Best gold wins: 1/2 against the first, 1/1 against the second.
    assert token_recall("Dalbrook won", ["Ines Dalbrook", "Dalbrook"]) == 1.0
    assert token_recall("Ines", ["Ines Dalbrook"]) == 0.5
    assert token_recall("red kite", ["blue lantern"]) == 0.0
    assert token_recall("", ["gold"]) == 0.0
    assert token_recall("anything", []) == 0.0


def test_token_recall_never_counts_empty_gold() -> None:
    assert token_recall("anything at all", [""]) == 0.0
    assert token_recall("the answer", ["the", "  "]) == 0.0  # empty after normalization


def test_score_answer_bundles_all_four() -> None:
    scores = score_answer("Old Gorrick, the big one", ["Old Gorrick"])
    assert scores.exact_match == 0.0
    assert scores.contains == 1.0
    # pred [old, gorrick, big, one], gold [old, gorrick]: precision 1/2, recall 1, F1 = 2/3
    assert scores.f1 == pytest.approx(2 / 3)
    assert scores.token_recall == 1.0
    # pred [gorrick, was, old], gold [old, gorrick, bell]: 2 of 3 recalled, not contained, F1 = 2/3.
    partial = score_answer("Gorrick was old", ["Old Gorrick bell"])
    assert (partial.exact_match, partial.contains) == (0.0, 0.0)
    assert partial.f1 == pytest.approx(2 / 3)
    assert partial.token_recall == pytest.approx(2 / 3)
    assert score_answer("Old Gorrick", ["old gorrick"]) == Scores(1.0, 1.0, 1.0, 1.0)


def test_scores_mean() -> None:
    assert Scores.mean([]) == Scores(0.0, 0.0, 0.0, 0.0)
    mean = Scores.mean([Scores(1.0, 1.0, 1.0, 1.0), Scores(0.0, 0.5, 1.0, 0.5), Scores(0.0, 0.0, 0.0, 0.25)])
    assert mean.exact_match == pytest.approx(1 / 3)
    assert mean.f1 == pytest.approx(0.5)
    assert mean.contains == pytest.approx(2 / 3)
    assert mean.token_recall == pytest.approx(0.5833333333)


def test_scores_is_frozen() -> None:
    scores = Scores(1.0, 1.0, 1.0, 1.0)
    with pytest.raises(AttributeError):
        scores.f1 = 0.0  # type: ignore[misc]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Denver Broncos", "Denver Broncos"),
        ("  Denver Broncos  \nQuestion: who lost?", "Denver Broncos"),
        ("1847<|im_end|>", "1847"),
        ("1847 <|im_end|>\n", "1847"),
        ("1847<|endoftext|><|im_end|>", "1847"),
        ("Teskany</s>", "Teskany"),
        ("Teskany<|im_end|>ignored tail", "Teskany"),
        ("\n\nMarigold\nmore", "Marigold"),  # leading blank lines do not swallow the answer
        ("Marigold\r\nmore", "Marigold"),
        ("", ""),
        ("<|im_end|>", ""),
        ("a < b and c > d", "a < b and c > d"),  # angle brackets alone are not special tokens
    ],
)
def test_clean_answer(raw: str, expected: str) -> None:
    assert clean_answer(raw) == expected
