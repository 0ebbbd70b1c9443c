"""Parsing SEAL/SQuAD passage files: the accepted shapes, every refusal, the demo set and SEAL's own data."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from seal_lab.errors import InvalidArgument
from seal_lab.formats.passages import (
    MAX_CONTEXT_CHARS,
    MAX_QUESTION_CHARS,
    MAX_QUESTIONS_PER_PASSAGE,
    Passage,
    Question,
    demo_passages,
    derive_passage_id,
    load_passages,
    parse_passages,
    parse_passages_bytes,
    passages_to_json,
)

SQUAD_VAL = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "seal" / "squad_val.json"


def _record(
    title: str = "Foo", context: str = "Foo was built in 1901 by Bar.", **extra: Any
) -> dict[str, Any]:
    record: dict[str, Any] = {
        "title": title,
        "context": context,
        "questions": [
            {"question": "When was Foo built?", "answer": "1901"},
            {"question": "Who built Foo?", "answer": "Bar"},
        ],
    }
    record.update(extra)
    return record


def _four_records() -> list[dict[str, Any]]:
    return [_record(title=f"T{i}", context=f"Context number {i}.") for i in range(3)] + [_record()]


def _refusal(raw: object, source: str = "demo.json") -> str:
    with pytest.raises(InvalidArgument) as info:
        parse_passages(raw, source)
    return info.value.message


# --- accepted shapes --------------------------------------------------------------------------------------


def test_parse_minimal_record() -> None:
    [passage] = parse_passages([_record()], "demo.json")
    expected_id = derive_passage_id("Foo", "Foo was built in 1901 by Bar.")
    assert passage == Passage(
        passage_id=expected_id,
        title="Foo",
        context="Foo was built in 1901 by Bar.",
        questions=(
            Question(f"{expected_id}-q0", "When was Foo built?", ("1901",)),
            Question(f"{expected_id}-q1", "Who built Foo?", ("Bar",)),
        ),
    )


def test_derived_id_is_sha256_of_title_and_context() -> None:
    import hashlib

    digest = hashlib.sha256(b"Foo\nFoo was built in 1901 by Bar.").hexdigest()
    assert derive_passage_id("Foo", "Foo was built in 1901 by Bar.") == "p-" + digest[:12]
    # Same context, different title: a different passage.
    assert derive_passage_id("Baz", "Foo was built in 1901 by Bar.") != derive_passage_id(
        "Foo", "Foo was built in 1901 by Bar."
    )


def test_explicit_id_is_kept() -> None:
    [passage] = parse_passages([_record(id="foo-1")], "demo.json")
    assert passage.passage_id == "foo-1"
    assert [q.question_id for q in passage.questions] == ["foo-1-q0", "foo-1-q1"]


def test_answer_forms() -> None:
    record = _record()
    record["questions"] = [
        {"question": "q string", "answer": "one"},
        {"question": "q list", "answer": ["one", "two"]},
        {"question": "q answers", "answers": ["three", "four"]},
        {"question": "q squad", "answers": [{"text": "five", "answer_start": 0}, {"text": "five"}]},
        {"question": "q both", "answer": "six", "answers": ["six", "seven"]},
    ]
    [passage] = parse_passages([record], "demo.json")
    assert [q.answers for q in passage.questions] == [
        ("one",),
        ("one", "two"),
        ("three", "four"),
        ("five",),
        ("six", "seven"),
    ]


def test_round_trip_through_json() -> None:
    record = _record()
    record["questions"].append({"question": "Which?", "answers": ["a thing", "another"]})
    passages = parse_passages([record, _record(title="Other", id="explicit")], "demo.json")
    as_json = passages_to_json(passages)
    # It survives a real JSON encode/decode, not just a Python round trip.
    assert parse_passages(json.loads(json.dumps(as_json)), "again") == passages
    assert as_json[0]["questions"][0] == {"question": "When was Foo built?", "answer": "1901"}
    assert as_json[0]["questions"][2] == {"question": "Which?", "answers": ["a thing", "another"]}


def test_limits_are_inclusive() -> None:
    record = _record(context="x" * MAX_CONTEXT_CHARS)
    record["questions"] = [{"question": "q" * MAX_QUESTION_CHARS, "answer": "x"}] * MAX_QUESTIONS_PER_PASSAGE
    [passage] = parse_passages([record], "demo.json")
    assert len(passage.questions) == MAX_QUESTIONS_PER_PASSAGE


# --- refusals ---------------------------------------------------------------------------------------------


def test_refuses_non_list_and_empty_list() -> None:
    assert _refusal({"title": "Foo"}).startswith("demo.json: ")
    assert "list" in _refusal({"title": "Foo"})
    assert "list" in _refusal("text")
    message = _refusal([])
    assert message.startswith("demo.json: ") and "empty" in message


def test_refuses_record_that_is_not_an_object() -> None:
    raw: list[object] = _four_records()
    raw[3] = "not a passage"
    message = _refusal(raw)
    assert message.startswith("demo.json: record 3")
    assert "object" in message


def _mutate(change: Any) -> list[dict[str, Any]]:
    raw = _four_records()
    change(raw[3])
    return raw


@pytest.mark.parametrize(
    ("change", "field", "words"),
    [
        (lambda r: r.pop("context"), "'context'", "missing"),
        (lambda r: r.update(context=""), "'context'", "empty"),
        (lambda r: r.update(context=" \n\t "), "'context'", "empty"),
        (lambda r: r.update(context=42), "'context'", "string"),
        (lambda r: r.update(context=["a", "b"]), "'context'", "string"),
        (lambda r: r.update(context="x" * (MAX_CONTEXT_CHARS + 1)), "'context'", str(MAX_CONTEXT_CHARS)),
        (lambda r: r.pop("questions"), "'questions'", "missing"),
        (lambda r: r.update(questions=[]), "'questions'", "empty"),
        (lambda r: r.update(questions="When?"), "'questions'", "list"),
        (
            lambda r: r.update(
                questions=[{"question": "q", "answer": "a"}] * (MAX_QUESTIONS_PER_PASSAGE + 1)
            ),
            "'questions'",
            str(MAX_QUESTIONS_PER_PASSAGE),
        ),
        (lambda r: r.update(title=7), "'title'", "string"),
        (lambda r: r.update(id=7), "'id'", "string"),
        (lambda r: r.update(id="  "), "'id'", "empty"),
    ],
)
def test_refuses_bad_record_fields(change: Any, field: str, words: str) -> None:
    message = _refusal(_mutate(change))
    assert message.startswith("demo.json: record 3")
    assert field in message
    assert words in message


def test_message_names_the_title_when_known() -> None:
    message = _refusal(_mutate(lambda r: r.update(context="")))
    assert message == "demo.json: record 3 ('Foo'): 'context' is empty"


@pytest.mark.parametrize(
    ("question", "field", "words"),
    [
        ({"answer": "1901"}, "'question'", "missing"),
        ({"question": "", "answer": "1901"}, "'question'", "empty"),
        ({"question": "   ", "answer": "1901"}, "'question'", "empty"),
        ({"question": 5, "answer": "1901"}, "'question'", "string"),
        (
            {"question": "q" * (MAX_QUESTION_CHARS + 1), "answer": "1901"},
            "'question'",
            str(MAX_QUESTION_CHARS),
        ),
        ({"question": "When?"}, "'answer'", "missing"),
        ({"question": "When?", "answer": None}, "'answer'", "missing"),
        ({"question": "When?", "answer": ""}, "'answer'", "empty"),
        ({"question": "When?", "answer": "  "}, "'answer'", "empty"),
        ({"question": "When?", "answer": []}, "'answer'", "empty"),
        ({"question": "When?", "answer": 1901}, "'answer'", "string"),
        ({"question": "When?", "answer": ["1901", 2]}, "'answer'", "string"),
        ({"question": "When?", "answers": "1901"}, "'answers'", "list"),
        ({"question": "When?", "answers": []}, "'answers'", "empty"),
        ({"question": "When?", "answers": [{"answer_start": 3}]}, "'answers'", "string"),
    ],
)
def test_refuses_bad_questions(question: dict[str, Any], field: str, words: str) -> None:
    raw = _four_records()
    raw[3]["questions"][1] = question
    message = _refusal(raw)
    assert message.startswith("demo.json: record 3 ('Foo'): question 1: ")
    assert field in message
    assert words in message


def test_refuses_question_that_is_not_an_object() -> None:
    raw = _four_records()
    raw[3]["questions"][0] = "When was Foo built?"
    message = _refusal(raw)
    assert message.startswith("demo.json: record 3 ('Foo'): question 0")
    assert "object" in message


def test_refuses_duplicate_passages() -> None:
    raw = _four_records()
    raw.append(copy.deepcopy(raw[1]))
    message = _refusal(raw)
    assert message.startswith("demo.json: record 4 ('T1')")
    assert "duplicates record 1" in message
    assert derive_passage_id("T1", "Context number 1.") in message


def test_refuses_duplicate_explicit_ids() -> None:
    raw = _four_records()
    raw[0]["id"] = "same"
    raw[3]["id"] = "same"
    message = _refusal(raw)
    assert message.startswith("demo.json: record 3 ('Foo')")
    assert "'id'" in message and "duplicates record 0" in message


def test_refuses_one_megabyte_context() -> None:
    raw = _mutate(lambda r: r.update(context="word " * 200_000))
    message = _refusal(raw)
    assert message.startswith("demo.json: record 3 ('Foo'): 'context'")
    assert "1000000" in message  # the size
    assert str(MAX_CONTEXT_CHARS) in message  # the limit
    assert "limit" in message


def test_long_title_is_shortened_in_messages() -> None:
    raw = _mutate(lambda r: r.update(title="T" * 500, context=""))
    message = _refusal(raw)
    assert "T" * 500 not in message
    assert len(message) < 200


# --- bytes and files --------------------------------------------------------------------------------------


def test_parse_bytes_accepts_utf8_and_bom() -> None:
    data = json.dumps([_record(title="Café")], ensure_ascii=False).encode()
    assert parse_passages_bytes(data, "x.json")[0].title == "Café"
    assert parse_passages_bytes(b"\xef\xbb\xbf" + data, "x.json")[0].title == "Café"


def test_parse_bytes_refuses_non_utf8() -> None:
    with pytest.raises(InvalidArgument) as info:
        parse_passages_bytes(b'[{"title": "\xff"}]', "upload.json")
    assert info.value.message.startswith("upload.json: ")
    assert "UTF-8" in info.value.message


def test_parse_bytes_refuses_invalid_json_with_position() -> None:
    with pytest.raises(InvalidArgument) as info:
        parse_passages_bytes(b'[\n  {"title": "Foo",\n   "context": }\n]', "upload.json")
    message = info.value.message
    assert message.startswith("upload.json: ")
    assert "JSON" in message
    assert "line 3" in message and "column" in message


def test_load_passages_reads_a_file(tmp_path: Path) -> None:
    path = tmp_path / "passages.json"
    path.write_text(json.dumps([_record()]), encoding="utf-8")
    [passage] = load_passages(path)
    assert passage.title == "Foo"


def test_load_passages_errors_name_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nope.json"
    with pytest.raises(InvalidArgument) as info:
        load_passages(missing)
    assert str(missing) in info.value.message

    with pytest.raises(InvalidArgument) as info:
        load_passages(tmp_path)
    assert str(tmp_path) in info.value.message

    broken = tmp_path / "broken.json"
    broken.write_text("[1, 2,", encoding="utf-8")
    with pytest.raises(InvalidArgument) as info:
        load_passages(broken)
    assert str(broken) in info.value.message and "line 1" in info.value.message

    bad_record = tmp_path / "bad.json"
    bad_record.write_text(json.dumps([_record(), _record(title="Two", context="")]), encoding="utf-8")
    with pytest.raises(InvalidArgument) as info:
        load_passages(bad_record)
    assert info.value.message == f"{bad_record}: record 1 ('Two'): 'context' is empty"


# --- the demo set and SEAL's data -------------------------------------------------------------------------


def test_demo_set() -> None:
    passages = demo_passages()
    assert len(passages) == 5
    assert len({p.passage_id for p in passages}) == 5
    for passage in passages:
        assert 60 <= len(passage.context.split()) <= 110, passage.title
        assert 4 <= len(passage.questions) <= 5, passage.title
        for question in passage.questions:
            assert question.answers, question.question_id
            for answer in question.answers:
                assert answer in passage.context, (passage.title, answer)
                assert 1 <= len(answer.split()) <= 4, answer
                # An answer spelled out in its own question would test nothing.
                assert answer.lower() not in question.question.lower(), (question.question, answer)


def test_demo_set_round_trips_and_is_fresh_each_call() -> None:
    passages = demo_passages()
    assert parse_passages(passages_to_json(passages), "round trip") == passages
    passages.clear()
    assert len(demo_passages()) == 5


def test_seal_squad_val_parses() -> None:
    if not SQUAD_VAL.is_file():
        pytest.skip(f"{SQUAD_VAL} is not present")
    passages = load_passages(SQUAD_VAL)
    assert len(passages) == 2067
    assert sum(len(p.questions) for p in passages) == 10570
    assert passages[0].title == "Super Bowl 50"
    assert passages[0].questions[0].answers == ("Denver Broncos",)


def test_retention_subset_is_evenly_spaced_fixed_and_bounded() -> None:
    from seal_lab.formats.passages import retention_questions, retention_set_size

    every = retention_questions()
    assert len(every) == retention_set_size() == 64
    subset = retention_questions(16)
    # Every fourth question: the set's topics (capitals, numbers, science, ...) are grouped, so the first 16
    # would all be capitals.
    assert [q.question_id for q in subset] == [f"retention-q{i}" for i in range(0, 64, 4)]
    assert retention_questions(16) == subset and retention_questions(0) == every
    assert len({q.question_id for q in retention_questions(63)}) == 63
    with pytest.raises(ValueError, match="has 64 questions; asked for 65"):
        retention_questions(65)


# --- text UTF-8 cannot encode, and fields a passage does not have (issue 34) -----------------------------


@pytest.mark.parametrize(
    ("record", "where"),
    [
        ('{"title": "Foo\\ud800", "context": "C.", "questions": []}', "demo.json: record 0: 'title'"),
        (
            '{"title": "Foo", "context": "C\\udfff", "questions": []}',
            "demo.json: record 0 ('Foo'): 'context'",
        ),
        (
            '{"title": "Foo", "context": "C.", "questions": [{"question": "\\ud800?", "answer": "A"}]}',
            "demo.json: record 0 ('Foo'): question 0: 'question'",
        ),
        (
            '{"title": "Foo", "context": "C.", "questions": [{"question": "Q?", "answers": ["A", "\\ud800"]}]}',
            "demo.json: record 0 ('Foo'): question 0: 'answers'[1]",
        ),
    ],
)
def test_a_file_whose_text_utf8_cannot_encode_is_refused_where_it_is(record: str, where: str) -> None:
    """JSON's escapes decode to a lone surrogate, which failed later, hashing the passage id or storing it."""
    with pytest.raises(InvalidArgument) as info:
        parse_passages_bytes(f"[{record}]".encode(), "demo.json")
    assert info.value.message.startswith(f"{where} holds a lone surrogate (U+D"), info.value.message


def test_a_stock_squad_file_with_a_lone_surrogate_is_refused_by_its_line() -> None:
    row = '{"title": "Foo", "context": "C.", "question": "Q?", "answers": {"text": ["A\\ud800"]}}'
    with pytest.raises(InvalidArgument) as info:
        parse_passages_bytes(f"{row}\n{row}\n".encode(), "rows.jsonl")
    assert info.value.message.startswith("rows.jsonl: line 1 ('Foo'): line 1: 'answers'[0] holds a lone")


def test_fields_a_passage_does_not_have_are_refused_but_skipped_in_files() -> None:
    record = _record(titel="typo")
    record["questions"][1]["hint"] = "x"
    assert _refusal([record]) == (
        "demo.json: record 0: unknown field 'titel' (a passage has 'id', 'title', 'context', 'questions')"
    )
    del record["titel"]
    assert _refusal([record]).endswith(
        "question 1: unknown field 'hint' (a question has 'question', 'answer', 'answers')"
    )
    # A file may carry fields of other tools (SEAL's scripts, SQuAD's ids): the CLI reads it, sends SEAL's.
    record["completions"] = ["a self-edit"]
    [passage] = parse_passages_bytes(json.dumps([record]).encode(), "seal.json")
    assert passage == parse_passages([_record()], "demo.json")[0]
