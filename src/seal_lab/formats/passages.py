"""Passages and questions in SEAL's knowledge-incorporation format (SQuAD passages, one answer each).

The format is a JSON list of ``{title, context, questions: [{question, answer}]}``. A passages file may also
be stock SQuAD (v1.1 JSON, or Hugging Face ``squad`` rows as JSON lines): `parse_passages_bytes` and
`load_passages` recognise all three (`seal_lab.formats.squad` regroups the stock layouts). Parsing is strict and
every refusal says where (source, record index or line, title, field) so that a user can fix a file without
guessing. Record and question indexes are 0-based: "record 3" is ``data[3]``; line numbers are 1-based.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from seal_lab.errors import InvalidArgument
from seal_lab.formats.squad import Converted, from_squad_rows, from_squad_v1, json_lines
from seal_lab.formats.squad import type_name as _type_name
from seal_lab.store import MAX_KEY_SEGMENT_CHARS, is_key_segment

MAX_CONTEXT_CHARS = 20_000
MAX_QUESTIONS_PER_PASSAGE = 50
MAX_QUESTION_CHARS = 1_000
#: SQuAD's titles are Wikipedia's (at most 255 bytes); its answers are spans of a few words, up to 5 per question.
MAX_TITLE_CHARS = 300
MAX_ANSWERS_PER_QUESTION = 20
MAX_ANSWER_CHARS = 1_000
#: A passage id names the passage in job ids, question ids and store keys: one key part, shorter than most.
MAX_PASSAGE_ID_CHARS = min(128, MAX_KEY_SEGMENT_CHARS)

#: The fields of a SEAL record and of one of its questions; `parse_passages` refuses others unless told to
#: ignore them (`extra`), so that a misspelt field (`"titel"`) is not silently dropped.
PASSAGE_FIELDS = ("id", "title", "context", "questions")
QUESTION_FIELDS = ("question", "answer", "answers")
Extra = Literal["forbid", "ignore"]

_DEMO_RESOURCE = "data/demo_passages.json"
_TITLE_IN_MESSAGE_CHARS = 60


@dataclass(frozen=True)
class Question:
    question_id: str
    question: str
    answers: tuple[str, ...]


@dataclass(frozen=True)
class Passage:
    passage_id: str
    title: str
    context: str
    questions: tuple[Question, ...]


def unencodable_text(text: str) -> str | None:
    """What makes `text` impossible to encode as UTF-8, for a message, or None. Only a lone surrogate
    (U+D800 to U+DFFF) does: JSON's `"\\ud800"` decodes to one (Python's json allows it), and it would fail
    later, where the text is hashed (the passage id), stored or tokenized."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return (
            f"holds a lone surrogate (U+{ord(text[exc.start]):04X}) at character {exc.start}: "
            "not text that can be encoded as UTF-8"
        )
    return None


def _encodable(text: str, where: str) -> None:
    """InvalidArgument, saying where (`where` names the field), if `text` cannot be encoded as UTF-8."""
    if (problem := unencodable_text(text)) is not None:
        raise InvalidArgument(f"{where} {problem}")


def _known_fields(record: dict[str, Any], fields: tuple[str, ...], what: str, where: str) -> None:
    unknown = [key for key in record if key not in fields]
    if unknown:
        raise InvalidArgument(
            f"{where}: unknown field {unknown[0]!r} ({what} has {', '.join(repr(f) for f in fields)})"
        )


def derive_passage_id(title: str, context: str) -> str:
    """Stable id from content, so the same passage gets the same id in every run and every service."""
    digest = hashlib.sha256(f"{title}\n{context}".encode()).hexdigest()
    return f"p-{digest[:12]}"


def _where(source: str, label: str, title: str | None) -> str:
    if not title:
        return f"{source}: {label}"
    if len(title) > _TITLE_IN_MESSAGE_CHARS:
        title = title[: _TITLE_IN_MESSAGE_CHARS - 3] + "..."
    return f"{source}: {label} ({title!r})"


def _parse_answers(q: dict[str, Any], where: str) -> tuple[str, ...]:
    """Collect answers from ``answer`` (string or list) and ``answers`` (list of strings or SQuAD objects)."""
    found: list[str] = []
    present = False
    for key in ("answer", "answers"):
        if key not in q or q[key] is None:
            continue
        present = True
        value = q[key]
        if isinstance(value, str) and key == "answer":
            items: list[object] = [value]
        elif isinstance(value, list):
            items = value
        else:
            expected = "a string or a list of strings" if key == "answer" else "a list of strings"
            raise InvalidArgument(f"{where}: {key!r} must be {expected}, got {_type_name(value)}")
        if not items:
            raise InvalidArgument(f"{where}: {key!r} is an empty list")
        if len(items) > MAX_ANSWERS_PER_QUESTION:
            raise InvalidArgument(
                f"{where}: {key!r} has {len(items)} entries, over the limit of {MAX_ANSWERS_PER_QUESTION}"
            )
        for j, item in enumerate(items):
            # Original SQuAD files carry answers as {"text", "answer_start"} objects.
            text = item.get("text") if isinstance(item, dict) else item
            if not isinstance(text, str):
                raise InvalidArgument(f"{where}: {key!r}[{j}] must be a string, got {_type_name(item)}")
            _encodable(text, f"{where}: {key!r}[{j}]")
            if not text.strip():
                raise InvalidArgument(f"{where}: {key!r}[{j}] is empty")
            if len(text) > MAX_ANSWER_CHARS:
                raise InvalidArgument(
                    f"{where}: {key!r}[{j}] is {len(text)} characters, over the limit of {MAX_ANSWER_CHARS}"
                )
            if text not in found:
                found.append(text)
    if not present:
        raise InvalidArgument(f"{where}: 'answer' is missing")
    return tuple(found)


def _parse_question(q: object, passage_id: str, index: int, where: str, extra: Extra) -> Question:
    if not isinstance(q, dict):
        raise InvalidArgument(f"{where}: must be an object, got {_type_name(q)}")
    if extra == "forbid":
        _known_fields(q, QUESTION_FIELDS, "a question", where)
    text = q.get("question")
    if text is None:
        raise InvalidArgument(f"{where}: 'question' is missing")
    if not isinstance(text, str):
        raise InvalidArgument(f"{where}: 'question' must be a string, got {_type_name(text)}")
    _encodable(text, f"{where}: 'question'")
    if not text.strip():
        raise InvalidArgument(f"{where}: 'question' is empty")
    if len(text) > MAX_QUESTION_CHARS:
        raise InvalidArgument(
            f"{where}: 'question' is {len(text)} characters, over the limit of {MAX_QUESTION_CHARS}"
        )
    return Question(question_id=f"{passage_id}-q{index}", question=text, answers=_parse_answers(q, where))


def check_passage_id(passage_id: str, where: str) -> str:
    """A passage id becomes part of job ids and store keys: short, and only the characters a key part has."""
    if len(passage_id) > MAX_PASSAGE_ID_CHARS:
        raise InvalidArgument(
            f"{where} is {len(passage_id)} characters, over the limit of {MAX_PASSAGE_ID_CHARS}"
        )
    if not is_key_segment(passage_id):
        raise InvalidArgument(f"{where} {passage_id!r} may hold only letters, digits and '._=-'")
    return passage_id


def _parse_record(
    record: object, label: str, source: str, question_labels: list[str] | None, extra: Extra
) -> Passage:
    """`label` names the record ("record 3", "line 7"); `question_labels` its questions ("question N" if None)."""
    if not isinstance(record, dict):
        raise InvalidArgument(f"{_where(source, label, None)}: must be an object, got {_type_name(record)}")
    if extra == "forbid":
        _known_fields(record, PASSAGE_FIELDS, "a passage", _where(source, label, None))
    title = record.get("title", "")
    if title is None:
        title = ""
    if not isinstance(title, str):
        raise InvalidArgument(
            f"{_where(source, label, None)}: 'title' must be a string, got {_type_name(title)}"
        )
    _encodable(title, f"{_where(source, label, None)}: 'title'")
    where = _where(source, label, title)
    if len(title) > MAX_TITLE_CHARS:
        raise InvalidArgument(
            f"{where}: 'title' is {len(title)} characters, over the limit of {MAX_TITLE_CHARS}"
        )

    context = record.get("context")
    if context is None:
        raise InvalidArgument(f"{where}: 'context' is missing")
    if not isinstance(context, str):
        raise InvalidArgument(f"{where}: 'context' must be a string, got {_type_name(context)}")
    _encodable(context, f"{where}: 'context'")
    if not context.strip():
        raise InvalidArgument(f"{where}: 'context' is empty")
    if len(context) > MAX_CONTEXT_CHARS:
        raise InvalidArgument(
            f"{where}: 'context' is {len(context)} characters, over the limit of {MAX_CONTEXT_CHARS}"
        )

    raw_id = record.get("id")
    if raw_id is None:
        passage_id = derive_passage_id(title, context)
    elif not isinstance(raw_id, str):
        raise InvalidArgument(f"{where}: 'id' must be a string, got {_type_name(raw_id)}")
    elif not raw_id.strip():
        raise InvalidArgument(f"{where}: 'id' is empty")
    else:
        passage_id = check_passage_id(raw_id, f"{where}: 'id'")

    questions = record.get("questions")
    if questions is None:
        raise InvalidArgument(f"{where}: 'questions' is missing")
    if not isinstance(questions, list):
        raise InvalidArgument(f"{where}: 'questions' must be a list, got {_type_name(questions)}")
    if not questions:
        raise InvalidArgument(f"{where}: 'questions' is empty")
    if len(questions) > MAX_QUESTIONS_PER_PASSAGE:
        raise InvalidArgument(
            f"{where}: 'questions' has {len(questions)} entries, "
            f"over the limit of {MAX_QUESTIONS_PER_PASSAGE}"
        )
    return Passage(
        passage_id=passage_id,
        title=title,
        context=context,
        questions=tuple(
            _parse_question(
                q,
                passage_id,
                j,
                f"{where}: {question_labels[j] if question_labels else f'question {j}'}",
                extra,
            )
            for j, q in enumerate(questions)
        ),
    )


def parse_passages(raw: object, source: str, *, extra: Extra = "forbid") -> list[Passage]:
    """Validate decoded JSON in SEAL/SQuAD format; ``source`` names the data in error messages. A field a
    passage or question does not have is refused, or with `extra="ignore"` skipped (files: other tools write
    fields of their own)."""
    if not isinstance(raw, list):
        raise InvalidArgument(f"{source}: expected a JSON list of passages, got {_type_name(raw)}")
    if not raw:
        raise InvalidArgument(f"{source}: the list of passages is empty")
    return _parse_converted([Converted(record, f"record {i}") for i, record in enumerate(raw)], source, extra)


def _parse_converted(records: list[Converted], source: str, extra: Extra) -> list[Passage]:
    passages: list[Passage] = []
    seen: dict[str, str] = {}
    for item in records:
        record = item.record
        passage = _parse_record(record, item.label, source, item.question_labels or None, extra)
        if passage.passage_id in seen:
            field = "'id'" if isinstance(record, dict) and record.get("id") is not None else "passage id"
            raise InvalidArgument(
                f"{_where(source, item.label, passage.title)}: {field} {passage.passage_id!r} duplicates "
                f"{seen[passage.passage_id]}"
            )
        seen[passage.passage_id] = item.label
        passages.append(passage)
    return passages


def _looks_like_json_lines(text: str) -> bool:
    first = next((line for line in text.splitlines() if line.strip()), "")
    try:
        return isinstance(json.loads(first), dict)
    except json.JSONDecodeError:
        return False


def _parse_stock(converted: list[Converted], source: str, what: str) -> list[Passage]:
    if not converted:
        raise InvalidArgument(f"{source}: {what} holds no passages")
    return _parse_converted(converted, source, "ignore")  # SQuAD's questions carry ids and more


def parse_passages_bytes(data: bytes, source: str) -> list[Passage]:
    """Decode UTF-8 (a BOM is tolerated) and parse it: SEAL's JSON list, a SQuAD v1.1 document, or
    Hugging Face ``squad`` rows as JSON lines, told apart by their shape. Fields SEAL records do not have are
    skipped: files written by SEAL's scripts and other tools carry fields of their own (the CLI sends only
    SEAL's fields, `passages_to_json`)."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InvalidArgument(f"{source}: not UTF-8 text (bad byte at offset {exc.start})") from None
    if not text.strip():
        raise InvalidArgument(f"{source}: the file is empty")
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        if _looks_like_json_lines(text):
            return _parse_stock(from_squad_rows(json_lines(text, source), source), source, "the file")
        raise InvalidArgument(
            f"{source}: not a JSON file (nor JSON lines): {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    if isinstance(raw, dict) and "data" in raw:
        return _parse_stock(from_squad_v1(raw, source), source, "'data'")
    if isinstance(raw, dict) and "question" in raw:  # JSON lines of one row
        return _parse_stock(from_squad_rows([(1, raw)], source), source, "the file")
    if isinstance(raw, dict):
        keys = ", ".join(repr(k) for k in list(raw)[:5])
        raise InvalidArgument(
            f"{source}: expected a JSON list of passages (SEAL), a SQuAD v1.1 object with 'data', or squad "
            f"rows as JSON lines; got an object with keys {keys or '(none)'}"
        )
    return parse_passages(raw, source, extra="ignore")


def load_passages(path: Path) -> list[Passage]:
    """Read and parse a passages file; a missing or unreadable file is the caller's argument error."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise InvalidArgument(f"{path}: no such file") from None
    except IsADirectoryError:
        raise InvalidArgument(f"{path}: is a directory, not a passages file") from None
    except OSError as exc:
        raise InvalidArgument(f"{path}: cannot read: {exc.strerror or exc}") from None
    return parse_passages_bytes(data, str(path))


def passages_to_json(passages: list[Passage] | tuple[Passage, ...]) -> list[dict[str, Any]]:
    """SEAL-format records that parse back to equal passages (the id is written so it survives)."""
    out: list[dict[str, Any]] = []
    for p in passages:
        questions: list[dict[str, Any]] = []
        for q in p.questions:
            if len(q.answers) == 1:
                questions.append({"question": q.question, "answer": q.answers[0]})
            else:
                questions.append({"question": q.question, "answers": list(q.answers)})
        out.append({"id": p.passage_id, "title": p.title, "context": p.context, "questions": questions})
    return out


@cache
def _demo_passages() -> tuple[Passage, ...]:
    data = resources.files("seal_lab").joinpath(_DEMO_RESOURCE).read_bytes()
    return tuple(parse_passages_bytes(data, f"seal_lab/{_DEMO_RESOURCE}"))


def demo_passages() -> list[Passage]:
    """The built-in demo set: invented facts, so a model cannot answer them without learning the passage."""
    return list(_demo_passages())


_RETENTION_RESOURCE = "data/retention_questions.json"


@cache
def _retention_questions() -> tuple[Question, ...]:
    records = json.loads(resources.files("seal_lab").joinpath(_RETENTION_RESOURCE).read_bytes())
    return tuple(
        Question(f"retention-q{i}", r["question"], tuple(r["answers"])) for i, r in enumerate(records)
    )


def retention_questions(count: int = 0) -> list[Question]:
    """General questions the embedded base model answers correctly (checked when the set was written).

    An adapter's score on them, next to the base model's, measures what the adapter made the model forget.
    `count` > 0 takes that many, evenly spaced over the set (its topics are grouped), always the same ones.
    """
    every = _retention_questions()
    if count < 0 or count > len(every):
        raise ValueError(f"the retention set has {len(every)} questions; asked for {count}")
    if not count:
        return list(every)
    return [every[i * len(every) // count] for i in range(count)]


def retention_set_size() -> int:
    return len(_retention_questions())
