"""Self-edit formats: prompts and how model output becomes training texts (pure)."""

from __future__ import annotations

import pytest

from seal_lab.errors import InvalidArgument
from seal_lab.formats.datasets import TrainingExample
from seal_lab.formats.strategies import builtin as get_format
from seal_lab.formats.strategies import builtin_names
from services.generator.selfedit import training_examples


def test_seal_formats_are_available():
    assert {"implications", "rewrite", "self-qa"} <= set(builtin_names())


def test_prompt_contains_the_passage():
    prompt = get_format("implications").render(0, "The Lamp", "The lamp is red.", {})
    assert "The Lamp\nThe lamp is red." in prompt and "implications" in prompt


def test_implications_are_split_per_line_without_numbering_or_directive():
    output = "1. The lamp is red and old.\n2) It was made in 1901 by Ada.\n- It hangs in the hall.\nok\nTraining: epochs=3"
    assert get_format("implications").training_texts(output) == [
        "The lamp is red and old.",
        "It was made in 1901 by Ada.",
        "It hangs in the hall.",
    ]


def test_self_qa_keeps_question_and_answer_together():
    output = "Question 1: Who made the lamp?\nAnswer: Ada made it.\n\nQuestion 2: When was it made?\nAnswer: In 1901."
    texts = get_format("self-qa").training_texts(output)
    assert texts == [
        "Question 1: Who made the lamp?\nAnswer: Ada made it.",
        "Question 2: When was it made?\nAnswer: In 1901.",
    ]


def test_unknown_format_is_refused_with_the_known_ones():
    with pytest.raises(InvalidArgument, match="implications"):
        get_format("haiku")


def test_training_examples_put_the_passage_first_and_the_title_before_every_text():
    examples = training_examples("T", "The lamp is red.", ["A fact here."], include_passage=True)
    assert examples == [TrainingExample("", "T\nThe lamp is red."), TrainingExample("", "T\nA fact here.")]
    without = training_examples("T", "ctx", ["A fact here."], include_passage=False)
    assert without == [TrainingExample("", "T\nA fact here.")]


def test_preamble_lines_are_not_trained_as_facts():
    output = "Here are the implications:\n1. The lamp is red and bright.\nSure, happy to help\nKey facts:"
    assert get_format("implications").training_texts(output) == ["The lamp is red and bright."]
