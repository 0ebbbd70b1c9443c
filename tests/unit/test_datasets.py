"""The dataset format: typed records written byte for byte as before (keys are content hashes), read back."""

from __future__ import annotations

from pathlib import Path

import pytest

from seal_lab.errors import CorruptObject, InvalidArgument
from seal_lab.formats.datasets import (
    PolicyMeta,
    SelfEditMeta,
    TrainingExample,
    parse_dataset,
    read_dataset,
    write_dataset,
)
from seal_lab.store.local import LocalStore

META = SelfEditMeta(
    format="implications",
    passage_id="p-1",
    sample_index=2,
    prompt="Write implications.",
    raw_output="1. The lamp is red.\nTraining: epochs=3",
    directive_text="Training: epochs=3",
    directive={
        "epochs": 3,
        "learning_rate": 0.001,
        "lora_rank": 16,
        "lora_alpha": 32,
        "batch_size": 1,
        "max_length": 1024,
        "steps": 0,
    },
    directive_source="partial",
    directive_notes=("missing learning_rate: defaults used",),
    include_passage=True,
    generated_tokens=12,
    policy_examples=(TrainingExample("<chat>", "1. The lamp is red."),),
    provenance={"backend": "local", "sampling": {"seed": 7, "temperature": 1.0}},
)
EXAMPLES = [TrainingExample("", "Lamp\nThe lamp is red. Ünï"), TrainingExample("", "Lamp\nThe lamp is red.")]
WINNER = {"passage_id": "p-1", "dataset_key": "datasets/a.jsonl", "reward": 0.25, "format": "implications"}


@pytest.fixture
def store(tmp_path: Path) -> LocalStore:
    return LocalStore(tmp_path)


def test_a_self_edit_dataset_keeps_the_key_its_bytes_always_had(store):
    # Keys computed by the writers before this module owned the format: a change here re-keys every dataset
    # and breaks the end-to-end determinism check.
    key = write_dataset(store, META, EXAMPLES)
    assert key == "datasets/704f8c5d4993a03ae840333f2f0d0fa432f2c3a2be1b8563ab09686aa6c8f4b2.jsonl"
    policy = write_dataset(
        store,
        PolicyMeta(({**WINNER, "sample_index": 1},)),
        [TrainingExample("<chat>", "1. The lamp is red.")],
    )
    assert policy == "datasets/032524e224bf56dd924ff8b7f532a431303c334793ed4e1c4a2aa81b4c474698.jsonl"


def test_a_written_dataset_reads_back(store):
    dataset = read_dataset(store, write_dataset(store, META, EXAMPLES))
    assert dataset.examples == tuple(EXAMPLES)
    assert dataset.meta == META.record()
    assert dataset.raw_output == META.raw_output and dataset.directive_text == META.directive_text
    assert dataset.policy_examples == META.policy_examples


def test_a_policy_dataset_names_its_purpose_and_winners(store):
    dataset = read_dataset(store, write_dataset(store, PolicyMeta((WINNER,)), EXAMPLES[:1]))
    assert dataset.meta == {"type": "meta", "purpose": "rest-em policy", "winners": [WINNER]}
    assert dataset.policy_examples == () and dataset.raw_output == ""


def test_hand_written_examples_are_read_and_blank_ones_skipped():
    data = b'{"text": "a fact"}\n\n{"prompt": "Q:", "completion": " A."}\n{"type": "text", "text": "  "}\n'
    dataset = parse_dataset(data, "datasets/x.jsonl")
    assert dataset.meta == {}
    assert dataset.examples == (TrainingExample("", "a fact"), TrainingExample("Q:", " A."))


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (b"\xff\xfe", "not UTF-8"),
        (b'{"text": "ok"}\nnot json\n', "line 2: not JSON"),
        (b"[1, 2]\n", "line 1: expected an object"),
        (b'{"completion": 3}\n', "line 1: needs a string 'text' or 'completion'"),
        (b'{"type": "meta"}\n{"type": "meta"}\n', "line 2: a second meta record"),
    ],
)
def test_malformed_datasets_are_invalid_arguments_that_name_the_line(data, problem):
    with pytest.raises(InvalidArgument, match=problem):
        parse_dataset(data, "datasets/x.jsonl")


def test_a_dataset_whose_bytes_do_not_match_its_key_is_corrupt(store):
    key = write_dataset(store, META, EXAMPLES)
    store.put_bytes(key, b'{"text": "tampered"}\n', overwrite=True)
    with pytest.raises(CorruptObject):
        read_dataset(store, key)
    assert not store.exists(key)


@pytest.mark.parametrize(
    ("line", "where"),
    [(b'{"text": "a\\ud800"}', "'text'"), (b'{"prompt": "\\udfff", "completion": "b"}', "'prompt'")],
)
def test_text_utf8_cannot_encode_is_refused_before_it_reaches_a_tokenizer(line, where):
    with pytest.raises(InvalidArgument) as info:
        parse_dataset(b'{"type": "meta"}\n' + line + b"\n", "datasets/x.jsonl")
    assert info.value.message.startswith(f"dataset 'datasets/x.jsonl' line 2: {where} holds a lone surrogate")
