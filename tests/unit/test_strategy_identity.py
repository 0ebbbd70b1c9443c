"""The three original self-edit formats, now strategy files, give byte-identical prompts and training texts.

`data/original_formats.json` was written by the hard-coded formats (services/generator/formats.py, removed in
the next commit; see this file's history): every demo passage's prompt, and the training texts of outputs
that exercise numbering, bullets, framing lines, Q/A pairs and a directive line. Store keys are the hash of
exactly these bytes (and the records around them), so equal bytes keep existing keys and results valid.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from seal_lab.formats.passages import demo_passages
from seal_lab.formats.strategies import builtin

GOLDEN = Path(__file__).parent / "data" / "original_formats.json"
NAMES = ("implications", "rewrite", "self-qa")

#: Outputs written the way small models write them.
OUTPUTS = (
    "1. The lamp is red and old.\n2) It was made in 1901 by Ada.\n- It hangs in the hall.\nok\nTraining: epochs=3",
    "Here are the implications:\n1. The lamp is red and bright.\nSure, happy to help\nKey facts:",
    "Question 1: Who made the lamp?\nAnswer: Ada made it.\n\nQuestion 2: When was it made?\nAnswer: In 1901.",
    "Q: Who made the lamp?\nA: Ada made it in her shop.\nQ: When was it made?\nA: In the year 1901.",
    "Rewrite 1: The red lamp was made by Ada in 1901.\n\nRewrite 2: Ada built a red lamp, in 1901.\n"
    "Implication 3: the hall holds the lamp today.\n* bullet with three words\n  \n\u2022 another bullet point here",
    "Sure! Below are some rewrites.\nThe lamp, red and old, hangs in the hall.\n\n\nTraining: lr=1e-4 epochs 2",
    "",
)


def _cases(render, split):
    return {
        name: {
            "prompts": [render(name, p.title, p.context) for p in demo_passages()],
            "texts": [split(name, output) for output in OUTPUTS],
        }
        for name in NAMES
    }


def _from_files():
    return _cases(
        lambda name, title, context: builtin(name).render(0, title, context, {}),
        lambda name, output: builtin(name).training_texts(output),
    )


def test_the_golden_file_holds_every_case():
    golden = json.loads(GOLDEN.read_text(encoding="utf-8"))
    assert set(golden) == set(NAMES)
    for name in NAMES:
        assert len(golden[name]["prompts"]) == len(demo_passages()) == 5
        assert len(golden[name]["texts"]) == len(OUTPUTS)
    # the cases are not trivial: texts were found and some were dropped
    assert golden["implications"]["texts"][0] == [
        "The lamp is red and old.",
        "It was made in 1901 by Ada.",
        "It hangs in the hall.",
    ]


@pytest.mark.parametrize("name", NAMES)
def test_file_driven_prompts_and_texts_equal_the_hard_coded_formats(name):
    golden = json.loads(GOLDEN.read_text(encoding="utf-8"))
    ours = _from_files()[name]
    assert [p.encode() for p in ours["prompts"]] == [p.encode() for p in golden[name]["prompts"]]
    assert ours["texts"] == golden[name]["texts"]
