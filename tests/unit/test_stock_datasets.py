"""Stock SQuAD files load as SEAL passages: SQuAD v1.1 JSON and Hugging Face `squad` rows as JSON lines, with
errors that name the paragraph or line, the field and what was expected."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from seal_lab.errors import InvalidArgument
from seal_lab.formats.passages import MAX_CONTEXT_CHARS, load_passages, parse_passages_bytes, passages_to_json

CONTEXT_A = "Foo was built in 1901 by Bar."
CONTEXT_B = "Baz opened in 1950."


def squad_v1(**paragraph_override: Any) -> dict[str, Any]:
    first = {
        "context": CONTEXT_A,
        "qas": [
            {
                "id": "q1",
                "question": "When was Foo built?",
                "answers": [{"text": "1901", "answer_start": 17}, {"text": "1901", "answer_start": 17}],
            },
            {"id": "q2", "question": "Who built Foo?", "answers": [{"text": "Bar", "answer_start": 25}]},
        ],
    }
    first.update(paragraph_override)
    second = {
        "context": CONTEXT_B,
        "qas": [
            {"id": "q3", "question": "When did Baz open?", "answers": [{"text": "1950", "answer_start": 14}]}
        ],
    }
    return {
        "version": "1.1",
        "data": [{"title": "Foo", "paragraphs": [first]}, {"title": "Baz", "paragraphs": [second]}],
    }


def squad_row(question: str, answer: str, context: str = CONTEXT_A, title: str = "Foo", **extra: Any) -> dict:
    row = {
        "id": f"id-{question}",
        "title": title,
        "context": context,
        "question": question,
        "answers": {"text": [answer], "answer_start": [context.find(answer)]},
    }
    row.update(extra)
    return row


def rows_text(rows: list[Any]) -> bytes:
    return ("\n".join(json.dumps(row) for row in rows) + "\n").encode()


def refusal(data: bytes, source: str = "squad.json") -> str:
    with pytest.raises(InvalidArgument) as info:
        parse_passages_bytes(data, source)
    return info.value.message


# --- the three formats ------------------------------------------------------------------------------------


def test_squad_v1_paragraphs_become_passages() -> None:
    passages = parse_passages_bytes(json.dumps(squad_v1()).encode(), "squad.json")
    assert [(p.title, p.context) for p in passages] == [("Foo", CONTEXT_A), ("Baz", CONTEXT_B)]
    assert [(q.question, q.answers) for q in passages[0].questions] == [
        ("When was Foo built?", ("1901",)),  # the duplicate answer span is one answer
        ("Who built Foo?", ("Bar",)),
    ]


def test_squad_rows_are_grouped_by_title_and_context_in_first_seen_order() -> None:
    rows = [
        squad_row("When was Foo built?", "1901"),
        squad_row("When did Baz open?", "1950", context=CONTEXT_B, title="Baz"),
        squad_row("Who built Foo?", "Bar"),
    ]
    passages = parse_passages_bytes(rows_text(rows), "train.jsonl")
    assert [p.title for p in passages] == ["Foo", "Baz"]
    assert [q.question for q in passages[0].questions] == ["When was Foo built?", "Who built Foo?"]
    assert passages[1].questions[0].answers == ("1950",)


def test_the_three_formats_give_the_same_passages(tmp_path: Path) -> None:
    v1 = tmp_path / "squad.json"
    v1.write_text(json.dumps(squad_v1()))
    rows = tmp_path / "squad.jsonl"
    rows.write_bytes(
        rows_text(
            [
                squad_row("When was Foo built?", "1901"),
                squad_row("Who built Foo?", "Bar"),
                squad_row("When did Baz open?", "1950", context=CONTEXT_B, title="Baz"),
            ]
        )
    )
    seal = tmp_path / "seal.json"
    seal.write_text(json.dumps(passages_to_json(load_passages(v1))))
    assert load_passages(v1) == load_passages(rows) == load_passages(seal)


def test_a_single_squad_row_loads() -> None:
    [passage] = parse_passages_bytes(json.dumps(squad_row("Who built Foo?", "Bar")).encode(), "one.jsonl")
    assert passage.questions[0].answers == ("Bar",)


# --- errors -----------------------------------------------------------------------------------------------


def test_malformed_json_names_line_and_column() -> None:
    message = refusal(b'{\n  "data": [\n    {"title": }\n]}')
    assert message.startswith("squad.json: not a JSON file")
    assert "line 3 column" in message


def test_empty_file_is_refused() -> None:
    assert refusal(b"  \n") == "squad.json: the file is empty"
    assert refusal(b'{"data": []}') == "squad.json: 'data' holds no passages"


def test_json_lines_bad_line_is_named_by_number() -> None:
    data = rows_text([squad_row("Who built Foo?", "Bar")]) + b'{"title": "x", broken\n'
    message = refusal(data, "train.jsonl")
    assert message.startswith("train.jsonl: line 2: not valid JSON: ") and "column" in message
    assert (
        refusal(rows_text([squad_row("Q?", "A"), [1, 2]]), "t.jsonl")
        == "t.jsonl: line 2: must be an object, got list"
    )


def test_json_lines_missing_and_mistyped_fields_name_the_line() -> None:
    row = squad_row("Who built Foo?", "Bar")
    missing_context = {k: v for k, v in row.items() if k != "context"}
    assert refusal(rows_text([row, missing_context]), "t.jsonl") == "t.jsonl: line 2: 'context' is missing"
    assert (
        refusal(rows_text([row, {**row, "title": 7}]), "t.jsonl")
        == "t.jsonl: line 2: 'title' must be a string, got int"
    )
    no_text = {**row, "question": "Other?", "answers": {"answer_start": [0]}}
    assert refusal(rows_text([row, no_text]), "t.jsonl") == "t.jsonl: line 2: 'answers' has no 'text' list"
    # Field checks after regrouping still name the row's line, the passage's first line and its title.
    no_question = {**row, "question": None}
    assert (
        refusal(rows_text([row, no_question]), "t.jsonl")
        == "t.jsonl: line 1 ('Foo'): line 2: 'question' is missing"
    )
    bad_answer = {**row, "question": "Other?", "answers": {"text": [5]}}
    assert refusal(rows_text([row, bad_answer]), "t.jsonl") == (
        "t.jsonl: line 1 ('Foo'): line 2: 'answers'[0] must be a string, got int"
    )


def test_squad_v1_missing_and_mistyped_fields_name_the_paragraph() -> None:
    assert refusal(json.dumps({"version": "1.1", "data": "x"}).encode()) == (
        "squad.json: 'data' must be a list, got str"
    )
    no_context = squad_v1(context=None)
    assert (
        refusal(json.dumps(no_context).encode())
        == "squad.json: data[0].paragraphs[0] ('Foo'): 'context' is missing"
    )
    no_qas = squad_v1()
    del no_qas["data"][1]["paragraphs"][0]["qas"]
    assert refusal(json.dumps(no_qas).encode()) == "squad.json: data[1].paragraphs[0]: 'qas' is missing"
    bad_answers = squad_v1()
    bad_answers["data"][0]["paragraphs"][0]["qas"][1]["answers"] = "Bar"
    assert refusal(json.dumps(bad_answers).encode()) == (
        "squad.json: data[0].paragraphs[0] ('Foo'): qas[1]: 'answers' must be a list of strings, got str"
    )
    paragraph_not_object = squad_v1()
    paragraph_not_object["data"][1]["paragraphs"] = ["text"]
    assert refusal(json.dumps(paragraph_not_object).encode()) == (
        "squad.json: data[1].paragraphs[0]: must be an object, got str"
    )


def test_passage_bounds_apply_to_stock_formats() -> None:
    long_context = squad_v1(context="x" * (MAX_CONTEXT_CHARS + 1))
    message = refusal(json.dumps(long_context).encode())
    assert message.startswith("squad.json: data[0].paragraphs[0] ('Foo'): 'context' is ")
    assert f"over the limit of {MAX_CONTEXT_CHARS}" in message


def test_an_object_of_another_shape_says_what_was_expected() -> None:
    message = refusal(b'{"passages": []}')
    assert "SQuAD v1.1 object with 'data'" in message and "'passages'" in message


def test_seal_format_errors_are_unchanged() -> None:
    bad = [{"title": "Two", "context": "", "questions": []}]
    assert refusal(json.dumps(bad).encode(), "x.json") == "x.json: record 0 ('Two'): 'context' is empty"
