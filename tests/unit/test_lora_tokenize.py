"""`seal_lab.model.grouptrain.tokenize`: loss on the completion only, and long prompts cut from the left (no model)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from seal_lab.formats.datasets import TrainingExample
from seal_lab.model.grouptrain import tokenize as _tokenize

EOS = 0


class CharTokenizer:
    """One token per character (its code point); the EOS id is 0, which no character maps to."""

    eos_token_id = EOS

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        assert add_special_tokens is False, "training text must not get a BOS/EOS from the tokenizer"
        return [ord(c) for c in text]


LOADED = SimpleNamespace(tokenizer=CharTokenizer())


def ids(text: str) -> list[int]:
    return [ord(c) for c in text]


def test_a_short_example_is_kept_whole_with_eos_after_the_completion():
    ((input_ids, labels),) = _tokenize(LOADED, [TrainingExample("abc", "XY")], max_length=32)
    assert input_ids == [*ids("abc"), *ids("XY"), EOS]
    assert labels == [-100, -100, -100, *ids("XY"), EOS]


def test_a_long_prompt_loses_its_start_and_the_completion_stays_whole():
    example = TrainingExample("0123456789abcdefghij", "XYZ")
    ((input_ids, labels),) = _tokenize(LOADED, [example], max_length=8)
    # 3 completion tokens + EOS = 4; the prompt keeps its last 4 characters.
    assert input_ids == ids("ghij") + ids("XYZ") + [EOS]
    assert labels == [-100] * 4 + ids("XYZ") + [EOS]
    assert len(input_ids) == len(labels) == 8


def test_a_completion_longer_than_max_length_drops_the_prompt_and_loses_its_end():
    ((input_ids, labels),) = _tokenize(LOADED, [TrainingExample("prompt", "ABCDEFGHIJ")], max_length=6)
    assert input_ids == ids("ABCDEF")
    assert labels == ids("ABCDEF")  # nothing of the prompt is left, so every label is learned


def test_plain_text_gets_no_eos_and_is_cut_at_the_end():
    ((input_ids, labels),) = _tokenize(LOADED, [TrainingExample("", "knowledge text")], max_length=9)
    assert input_ids == labels == ids("knowledge")


def test_examples_with_nothing_to_learn_are_dropped():
    examples = [TrainingExample("", ""), TrainingExample("", "ok"), TrainingExample("p", "")]
    encoded = _tokenize(LOADED, examples, max_length=16)
    # An empty completion after a prompt still teaches where the answer ends (EOS).
    assert encoded == [(ids("ok"), ids("ok")), ([*ids("p"), EOS], [-100, EOS])]


def test_plain_text_ends_with_eos_when_the_recipe_says_so():
    (without,) = _tokenize(LOADED, [TrainingExample("", "abc")], 16)
    (with_eos,) = _tokenize(LOADED, [TrainingExample("", "abc")], 16, text_eos=True)
    assert without[0] == ids("abc") and with_eos[0] == [*ids("abc"), EOS]
    assert with_eos[1] == [*ids("abc"), EOS]  # the EOS is learned


def test_a_step_budget_cycles_the_data_without_repeating_an_example_in_a_step():
    from seal_lab.formats.directive import Directive
    from seal_lab.model.grouptrain import _Plan

    encoded = [(ids(f"x{i}"), ids(f"x{i}")) for i in range(5)]
    plan = _Plan.build(encoded, Directive(batch_size=2, steps=12), seed=3)
    assert len(plan.steps) == 12
    assert all(len(step) == 2 and len(set(step)) == 2 for step in plan.steps)
    seen = [i for step in plan.steps for i in step]
    assert sorted(seen[:5]) == [0, 1, 2, 3, 4]  # the first pass covers every example once
    assert {seen.count(i) for i in range(5)} <= {4, 5, 6}  # 24 draws spread evenly over 5 examples
    # One example (passage only): one per step, whatever the batch size; the same budget of steps.
    single = _Plan.build(encoded[:1], Directive(batch_size=4, steps=12), seed=3)
    assert single.steps == [[0]] * 12
    # No budget: `epochs` passes, as before.
    passes = _Plan.build(encoded, Directive(epochs=2, batch_size=2, steps=0), seed=3)
    assert len(passes.steps) == 6 and passes.epochs_of_step == [1, 1, 1, 2, 2, 2]


def test_the_schedule_warms_up_decays_and_never_stalls():
    from seal_lab.model.grouptrain import Schedule

    factors = [Schedule().factor(step, 10) for step in range(10)]
    assert factors == pytest.approx([0.5, 1.0, 8 / 9, 7 / 9, 6 / 9, 5 / 9, 4 / 9, 3 / 9, 2 / 9, 1 / 9])
    assert Schedule().factor(0, 1) == 1.0  # a one-step job still learns
    assert [Schedule.constant().factor(s, 4) for s in range(4)] == [1.0] * 4
