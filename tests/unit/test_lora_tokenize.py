"""`seal_lab.grouptrain.tokenize`: loss on the completion only, and long prompts cut from the left (no model)."""

from __future__ import annotations

from types import SimpleNamespace

from seal_lab.grouptrain import TrainingExample
from seal_lab.grouptrain import tokenize as _tokenize

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
