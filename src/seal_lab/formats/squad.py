"""The stock SQuAD layouts, turned into SEAL-format records for `seal_lab.formats.passages` to validate.

- SQuAD v1.1 JSON: ``{"data": [{"title", "paragraphs": [{"context", "qas": [{"question", "answers": [{"text",
  "answer_start"}]}]}]}]}``; each paragraph is one passage.
- Hugging Face ``squad`` rows as JSON lines: ``{"id", "title", "context", "question", "answers": {"text": [...],
  "answer_start": [...]}}``, one question per line; rows with the same title and context are one passage.

Only the structure needed to regroup is checked here; every record's fields and bounds are checked by
`seal_lab.formats.passages`, which names each record by where it came from (``data[0].paragraphs[3]``, ``line 7``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from seal_lab.errors import InvalidArgument


@dataclass
class Converted:
    """One SEAL-format record, where it came from, and where each of its questions came from."""

    record: dict[str, Any]
    label: str
    question_labels: list[str] = field(default_factory=list)


def type_name(value: object) -> str:
    return "null" if value is None else type(value).__name__


def _list(value: object, where: str, name: str) -> list[Any]:
    if value is None:
        raise InvalidArgument(f"{where}: {name!r} is missing")
    if not isinstance(value, list):
        raise InvalidArgument(f"{where}: {name!r} must be a list, got {type_name(value)}")
    return value


def _object(value: object, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InvalidArgument(f"{where}: must be an object, got {type_name(value)}")
    return value


def from_squad_v1(document: dict[str, Any], source: str) -> list[Converted]:
    """A SQuAD v1.1 document (the object with ``data``): one record per paragraph."""
    converted: list[Converted] = []
    for i, article in enumerate(_list(document.get("data"), source, "data")):
        article = _object(article, f"{source}: data[{i}]")
        title = article.get("title", "")
        for j, paragraph in enumerate(_list(article.get("paragraphs"), f"{source}: data[{i}]", "paragraphs")):
            label = f"data[{i}].paragraphs[{j}]"
            paragraph = _object(paragraph, f"{source}: {label}")
            qas = _list(paragraph.get("qas"), f"{source}: {label}", "qas")
            record = {"title": title, "context": paragraph.get("context"), "questions": qas}
            converted.append(Converted(record, label, [f"qas[{k}]" for k in range(len(qas))]))
    return converted


def _row_answers(row: dict[str, Any], where: str) -> object:
    """The ``answers`` column as SEAL's list of answers: Hugging Face stores ``{"text": [...], ...}``."""
    answers = row.get("answers")
    if isinstance(answers, dict):
        if "text" not in answers:
            raise InvalidArgument(f"{where}: 'answers' has no 'text' list")
        return answers["text"]
    return answers  # a list (or a wrong type), which `seal_lab.formats.passages` checks and explains


def from_squad_rows(lines: list[tuple[int, dict[str, Any]]], source: str) -> list[Converted]:
    """Hugging Face ``squad`` rows (line number, decoded row): one record per (title, context)."""
    passages: dict[tuple[str, str], Converted] = {}
    for number, row in lines:
        where = f"{source}: line {number}"
        title = row.get("title", "")
        context = row.get("context")
        for name, value, required in (("title", title, False), ("context", context, True)):
            if value is None and required:
                raise InvalidArgument(f"{where}: {name!r} is missing")
            if value is not None and not isinstance(value, str):
                raise InvalidArgument(f"{where}: {name!r} must be a string, got {type_name(value)}")
        key = (title or "", context)
        if key not in passages:
            passages[key] = Converted({"title": title, "context": context, "questions": []}, f"line {number}")
        passage = passages[key]
        passage.record["questions"].append(
            {"question": row.get("question"), "answers": _row_answers(row, where)}
        )
        passage.question_labels.append(f"line {number}")
    return list(passages.values())


def json_lines(text: str, source: str) -> list[tuple[int, dict[str, Any]]]:
    """Each non-blank line one JSON object, with its 1-based line number."""
    rows: list[tuple[int, dict[str, Any]]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InvalidArgument(
                f"{source}: line {number}: not valid JSON: {exc.msg} at column {exc.colno}"
            ) from None
        if not isinstance(row, dict):
            raise InvalidArgument(f"{source}: line {number}: must be an object, got {type_name(row)}")
        rows.append((number, row))
    return rows
