"""ReST-EM's SFT data: the policy dataset from winning self-edits, and teacher self-edits matched by context."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from seal_lab.errors import InvalidArgument
from seal_lab.formats.datasets import TrainingExample
from seal_lab.formats.directive import DIRECTIVE_LINE_PREFIX, Directive, format_directive
from seal_lab.formats.passages import Passage, Question
from seal_lab.store import content_key
from seal_lab.store.local import LocalStore
from services.coordinator.engine.policy import (
    build_policy_dataset,
    match_teacher_completions,
    policy_examples,
)
from services.coordinator.run.records import BestSelfEdit

OWN_DIRECTIVE = {"epochs": 5, "learning_rate": 0.003, "lora_rank": 16, "lora_alpha": 32, "batch_size": 1}


def _dataset(
    examples: list[dict[str, str]] | None, texts: tuple[str, ...] = ("fact one", "fact two")
) -> bytes:
    meta: dict[str, Any] = {"type": "meta", "raw_output": "raw", "directive_text": "Training: epochs=5"}
    if examples is not None:
        meta["policy_examples"] = examples
    lines = [meta] + [{"type": "text", "text": t} for t in texts]
    return "".join(json.dumps(r) + "\n" for r in lines).encode()


def _examples(name: str) -> list[dict[str, str]]:
    return [
        {"prompt": f"<chat>{name}</chat>", "completion": f"self-edit of {name}"},
        {"prompt": f"<chat>{name}</chat>self-edit\nTraining: epochs=", "completion": "5 learning_rate=0.003"},
    ]


def _winner(name: str, trial: str = "", directive: dict[str, Any] | None = None) -> BestSelfEdit:
    """A winner as a policy record keeps it (run/records.py)."""
    return BestSelfEdit.model_validate(
        {
            "passage_id": f"p-{name}",
            "dataset_key": f"datasets/{name}.jsonl",
            "reward": 0.25,
            "format": "implications",
            "sample_index": 1,
            "adapter_key": f"adapters/{name}",
            "directive": directive or {**OWN_DIRECTIVE, "max_length": 256},
            "directive_trial": trial,
            "positive": True,
        }
    )


@pytest.fixture
def store(tmp_path: Path) -> LocalStore:
    store = LocalStore(tmp_path)
    store.put_bytes("datasets/a.jsonl", _dataset(_examples("a")))
    store.put_bytes("datasets/b.jsonl", _dataset(_examples("b")))
    store.put_bytes("datasets/none.jsonl", _dataset(None))
    store.put_bytes("datasets/nometa.jsonl", b'{"type": "text", "text": "fact"}\n')
    return store


def _records(store: LocalStore, key: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in store.get_bytes(key).decode().splitlines()]


def test_policy_dataset_is_written_under_its_content_key(store):
    key, examples = build_policy_dataset(store, [_winner("a"), _winner("b")])
    assert examples == 4
    assert key.startswith("datasets/") and key.endswith(".jsonl")
    data = store.get_bytes(key)
    assert key == content_key("datasets", data, ".jsonl")
    # Same winners, same bytes, same key.
    assert build_policy_dataset(store, [_winner("a"), _winner("b")]) == (key, 4)


def test_policy_dataset_records(store):
    key, _ = build_policy_dataset(store, [_winner("a"), _winner("b")])
    meta, *examples = _records(store, key)
    assert meta["type"] == "meta" and meta["purpose"] == "rest-em policy"
    assert meta["winners"] == [
        {
            "passage_id": f"p-{n}",
            "dataset_key": f"datasets/{n}.jsonl",
            "reward": 0.25,
            "format": "implications",
            "sample_index": 1,
        }
        for n in ("a", "b")
    ]
    assert examples == [{"type": "example", **e} for e in _examples("a") + _examples("b")]


def test_a_directive_search_winner_teaches_the_better_directive(store):
    better = {**OWN_DIRECTIVE, "epochs": 1, "learning_rate": 0.001, "max_length": 256, "steps": 0}
    key, examples = build_policy_dataset(store, [_winner("a", "-d1", better), _winner("b")])
    assert examples == 4
    _, a_edit, a_directive, b_edit, b_directive = _records(store, key)
    # The self-edit text stays; its directive completion is the directive that won, after the prompt's prefix.
    assert a_edit["completion"] == "self-edit of a"
    assert a_directive["prompt"] == _examples("a")[1]["prompt"]
    assert a_directive["completion"] == (
        "1 learning_rate=0.001 lora_rank=16 lora_alpha=32 batch_size=1 max_length=256"
    )
    assert DIRECTIVE_LINE_PREFIX + a_directive["completion"] == format_directive(Directive(**better))
    # The own-directive winner keeps what the model wrote.
    assert b_directive["completion"] == "5 learning_rate=0.003"
    assert b_edit["completion"] == "self-edit of b"


def test_policy_examples_leaves_unexpected_shapes_alone():
    # Only the (self-edit, directive) pair of the local generator is rewritten.
    single = (TrainingExample(**_examples("a")[0]),)
    assert policy_examples(single, _winner("a", "-d1")) == list(single)
    assert policy_examples((), _winner("a", "-d1")) == []


def test_winners_without_policy_examples_write_nothing(store):
    assert build_policy_dataset(store, [_winner("none")]) == ("", 0)
    assert build_policy_dataset(store, []) == ("", 0)
    assert store.list_keys("datasets/") == sorted(
        ["datasets/a.jsonl", "datasets/b.jsonl", "datasets/none.jsonl", "datasets/nometa.jsonl"]
    )


def test_a_dataset_without_meta_is_an_invalid_argument(store):
    with pytest.raises(InvalidArgument, match="has no meta record"):
        build_policy_dataset(store, [_winner("nometa")])


# ---- teacher completions ----------------------------------------------------------------------------------


def _passage(passage_id: str, context: str) -> Passage:
    return Passage(passage_id, passage_id, context, (Question(f"{passage_id}-q", "Q?", ("a",)),))


HELDOUT = [
    _passage("p-1", "The lamp is red.\nIt stands in the hall."),
    _passage("p-2", "The door is blue."),
    _passage("p-3", "The roof is green."),
]


def test_teacher_completions_match_by_whitespace_normalised_context():
    entries = [
        {"context": "  The lamp is red. It   stands\tin the hall.\n", "completions": ["lamp 0", "lamp 1"]},
        {"context": "The door is blue.", "completions": ["door 0", "door 1"], "title": "ignored"},
        {"context": "Not a held-out passage.", "completions": ["other"]},
    ]
    assert match_teacher_completions("gpt", entries, 0, HELDOUT) == {"p-1": "lamp 0", "p-2": "door 0"}
    assert match_teacher_completions("gpt", entries, 1, HELDOUT) == {"p-1": "lamp 1", "p-2": "door 1"}


def test_entries_without_the_chosen_completion_are_skipped():
    entries = [
        {"context": "The lamp is red. It stands in the hall.", "completions": ["lamp 0"]},
        {"context": "The door is blue.", "completions": ["door 0", "door 1"]},
    ]
    assert match_teacher_completions("gpt", entries, 1, HELDOUT) == {"p-2": "door 1"}


def test_no_match_is_an_invalid_argument_that_says_why():
    entries = [
        {"context": "Something else entirely.", "completions": ["x"]},
        {"context": "The door is blue.", "completions": ["door 0"]},
    ]
    with pytest.raises(InvalidArgument) as info:
        match_teacher_completions("gpt", entries, 1, HELDOUT)
    message = str(info.value)
    assert "'gpt'" in message and "2 passages" in message and "completion 1" in message
    assert "matched by their context" in message


def test_no_heldout_passages_is_an_invalid_argument():
    entries = [{"context": "The door is blue.", "completions": ["door 0"]}]
    with pytest.raises(InvalidArgument, match="no held-out passages"):
        match_teacher_completions("gpt", entries, 0, [])


@pytest.mark.parametrize(
    ("entry", "problem"),
    [
        ("The door is blue.", "string 'context'"),
        ({"completions": ["x"]}, "string 'context'"),
        ({"context": 3, "completions": ["x"]}, "string 'context'"),
        ({"context": "The door is blue."}, "'completions' must be a list of strings"),
        (
            {"context": "The door is blue.", "completions": "door 0"},
            "'completions' must be a list of strings",
        ),
        (
            {"context": "The door is blue.", "completions": ["ok", 2]},
            "'completions' must be a list of strings",
        ),
    ],
)
def test_malformed_entries_are_invalid_arguments(entry, problem):
    good = {"context": "The door is blue.", "completions": ["door 0"]}
    with pytest.raises(InvalidArgument, match=r"teachers\[gpt\]\.passages\[1\]") as info:
        match_teacher_completions("gpt", [good, entry], 0, HELDOUT)
    assert problem in str(info.value)


def test_without_the_models_directives_the_policy_learns_the_self_edits_alone(store):
    key, count = build_policy_dataset(store, [_winner("a"), _winner("b", "-d1")], directives=False)
    examples = [r for r in _records(store, key) if r["type"] == "example"]
    assert count == len(examples) == 2
    assert [e["completion"] for e in examples] == ["self-edit of a", "self-edit of b"]
    # with them, each winner also teaches its directive line
    assert build_policy_dataset(store, [_winner("a"), _winner("b", "-d1")])[1] == 4
