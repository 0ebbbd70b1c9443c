"""The invented passage sets (benchmarks/data) load through the project's loader, have enough passages of 5
questions each, every answer stated word for word in its passage, and share no names: the tune set, the
held-out final set and the old check set are about different things, so tuning on one teaches nothing about
another."""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import pytest

from seal_lab.formats.passages import Passage, Question, load_passages

DATA = Path(__file__).resolve().parents[2] / "benchmarks" / "data"
SETS = {
    "check": DATA / "invented_check.json",
    "tune": DATA / "invented_tune_20261207.json",
    "spent_final_20261207": DATA / "invented_final_20261207.json",
    "final": DATA / "invented_final_20261208.json",
}
#: "final" is the set held out for issue 28's next final check; the 20261207 final set was spent by the check
#: of 2026-12-08 and may now be used to choose, like the tune set.
ISSUE_28_SETS = ("tune", "spent_final_20261207", "final")

#: Capitalised words that are not names: sentence openers, months, days and the generic parts of place and
#: institution names ("River", "Museum"). Everything else capitalised counts as a name.
GENERIC = frozenset(
    re.findall(
        r"\w+",
        """
    A About Adults After According An And As At Because Both But By Daily Digging During Each Every For From
    He Her His However In It Its Most On Once Only Since She So The Their There They This Today Two Unlike
    When While With
    January February March April May June July August September October November December
    Monday Tuesday Wednesday Thursday Friday Saturday Sunday Christmas Eve Boxing Day Lent Moon
    Academy Archive Bay Bridge Brothers Canal Cape Captain Church Clock Club Coast College Company Contest
    Cross Cup Day Exhibition Fair Farm Feast Festival Fine Gallery Games Glass Great Green Gulf Hall Harbour
    Head Hill Hills House Institute Islands Island King Lady Lake Lane Library Loom Lord Marsh Marshes Mass
    Medal Mill Minster Moor Moth Mount Museum Natural History Night Observatory Old Park Pass Port Prize
    Research River Road Rock Saint Salt School Science Shield Sir Society Sons Station Stone Trust Tunnel
    University Vale Valley Walk Works
    """,
    )
)
_CAPITALISED = re.compile(r"\b[A-Z][a-z]+(?:'s)?")


def _names(passages: list[Passage]) -> set[str]:
    text = " ".join(
        f"{p.title} {p.context} " + " ".join(a for q in p.questions for a in q.answers) for p in passages
    )
    return {word.removesuffix("'s") for word in _CAPITALISED.findall(text)} - GENERIC


@pytest.mark.parametrize("name", ISSUE_28_SETS)
def test_each_issue_28_set_loads_with_at_least_20_passages_of_5_questions(name):
    passages = load_passages(SETS[name])
    assert len(passages) >= 20
    assert [len(p.questions) for p in passages] == [5] * len(passages)
    assert len({p.title for p in passages}) == len(passages)
    lengths = [len(p.context.split()) for p in passages]
    assert min(lengths) >= 80 and max(lengths) <= 160, lengths


@pytest.mark.parametrize("name", list(SETS))
def test_every_answer_appears_verbatim_in_its_passage(name):
    missing = [
        (p.title, q.question, answer)
        for p in load_passages(SETS[name])
        for q in p.questions
        for answer in q.answers
        if answer.lower() not in p.context.lower()
    ]
    assert not missing


@pytest.mark.parametrize(("a", "b"), list(itertools.combinations(SETS, 2)))
def test_no_two_sets_share_a_title_or_a_name(a, b):
    first, second = load_passages(SETS[a]), load_passages(SETS[b])
    assert not {p.title for p in first} & {p.title for p in second}
    assert not _names(first) & _names(second)


def test_the_name_check_sees_a_shared_name():
    tune = load_passages(SETS["tune"])
    question = Question("x-q0", "When did he come?", ("1850",))
    renamed = [Passage("x", "Pellisand", "Tobias Wrenfield came to Pellisand in 1850.", (question,))]
    assert _names(renamed) & _names(tune) == {"Tobias", "Wrenfield"}
