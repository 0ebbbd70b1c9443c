"""The coordinator's door: every part of a run request is bounded before anything is created (issue 12,
item 3). Over the real app and run manager; the services' addresses lead nowhere, and no test creates a run."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from seal_lab.store.local import LocalStore
from services.coordinator.api import bodylimit
from services.coordinator.api.app import create_app
from services.coordinator.engine import admission
from services.coordinator.run import limits
from services.coordinator.settings import CoordinatorSettings

PASSAGE = {
    "title": "The Vellum Bell",
    "context": "The Vellum Bell of Ostrany was cast in 1712 by Pell Arrowby.",
    "questions": [{"question": "Who cast the Vellum Bell?", "answer": "Pell Arrowby"}],
}
MAX_BODY = 64 * 1024


def passage(**changes: Any) -> dict[str, Any]:
    return {**PASSAGE, **changes}


def question(**changes: Any) -> dict[str, Any]:
    return {**PASSAGE["questions"][0], **changes}


@pytest.fixture
def client(tmp_path) -> Iterator[TestClient]:
    settings = CoordinatorSettings(
        generator_address="127.0.0.1:1",
        trainer_addresses=["127.0.0.1:1"],
        evaluator_address="127.0.0.1:1",
        max_passages_per_run=3,
        max_body_bytes=MAX_BODY,
    )
    store = LocalStore(tmp_path / "store")
    store.put_bytes("adapters/present/adapter_config.json", b"{}")
    with TestClient(create_app(settings, store)) as test_client:
        yield test_client
        assert test_client.get("/v1/runs").json()["runs"] == []  # nothing was created


def refused(client: TestClient, body: dict[str, Any] | str) -> str:
    """POST a run that must be refused with 422; its message."""
    if isinstance(body, str):  # JSON with NaN or Infinity, as Python's json (and some clients) write it
        response = client.post("/v1/runs", content=body, headers={"content-type": "application/json"})
    else:
        response = client.post("/v1/runs", json=body)
    assert response.status_code == 422, response.text
    assert "Traceback" not in response.text
    return response.json()["message"]


@pytest.mark.parametrize(
    ("record", "message"),
    [
        (passage(title="t" * 301), "'title' is 301 characters, over the limit of 300"),
        (passage(id="p" * 129), "'id' is 129 characters, over the limit of 128"),
        (passage(id="../../etc/passwd"), "may hold only letters, digits and '._=-'"),
        (passage(id="a b"), "may hold only letters"),
        (passage(questions=[question(answer=None, answers=["x"] * 21)]), "'answers' has 21 entries"),
        (passage(questions=[question(answer="a" * 1001)]), "is 1001 characters, over the limit of 1000"),
        (passage(questions=[question(question="q" * 1001)]), "'question' is 1001 characters"),
    ],
)
def test_each_part_of_a_passage_is_bounded(client, record, message):
    assert message in refused(client, {"passages": [record]})


@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity"])
def test_min_reward_must_be_finite(client, value):
    body = '{"dataset": "demo", "config": {"min_reward": VALUE}}'.replace("VALUE", value)
    assert "config.min_reward" in refused(client, body)


def test_no_number_of_the_config_may_be_infinite(client):
    body = '{"dataset": "demo", "config": {"directive_search": [{"learning_rate": Infinity}]}}'
    assert "config.directive_search.0.learning_rate" in refused(client, body)


@pytest.mark.parametrize(
    ("key", "message"),
    [
        ("../../etc/passwd", "invalid object key"),
        ("adapters/" + "a" * 300, "too long"),
        ("adapters/missing", "no adapter at key 'adapters/missing'"),
    ],
)
def test_the_policy_adapter_key_is_checked_when_the_run_is_created(client, key, message):
    body = {"dataset": "demo", "limit": 1, "config": {"policy_adapter_key": key}}
    assert message in refused(client, body)


def test_format_names_are_short_words(client):
    assert "config.formats.0" in refused(client, {"dataset": "demo", "config": {"formats": ["x" * 1000]}})
    detail = refused(client, {"dataset": "demo", "config": {"heldout_format": "../x"}})
    assert "config.heldout_format" in detail


def test_limit_does_not_lift_the_passage_cap(client):
    records = [passage(context=f"Passage number {i} is about bells.") for i in range(4)]
    detail = refused(client, {"passages": records, "limit": 1})
    assert "4 passages sent" in detail and "at most 3 per run" in detail


def test_the_passage_count_stops_validation_before_the_records(client):
    records = [{} for _ in range(limits.MAX_PASSAGES_PER_REQUEST + 1)]  # each would be refused if parsed
    detail = refused(client, {"passages": records})
    assert f"at most {limits.MAX_PASSAGES_PER_REQUEST} items" in detail and "record 0" not in detail


def test_a_teacher_completion_longer_than_the_generator_imports_is_refused(client):
    other = passage(context="Another passage, held out from training.")
    teacher = {"name": "big", "passages": [{"context": other["context"], "completions": ["x" * 50_001]}]}
    body = {"passages": [PASSAGE], "heldout_passages": [other], "teachers": [teacher]}
    assert "the generator imports at most 50,000" in refused(client, body)


def test_the_teacher_limit_matches_the_generators():
    from services.generator.server import MAX_IMPORT_CHARS

    assert limits.MAX_TEACHER_COMPLETION_CHARS == MAX_IMPORT_CHARS


def test_a_request_that_would_not_fit_in_a_grpc_message_is_refused(client, monkeypatch):
    monkeypatch.setattr(admission, "MAX_MESSAGE_BYTES", 4_000)  # a 16 MiB message needs 16 MiB of test data
    detail = refused(client, {"passages": [passage(context="words " * 1000)]})
    assert "request would be" in detail and "over the 4,000-byte limit of a gRPC message" in detail


def test_a_body_over_the_limit_is_413_by_its_declared_length(client):
    records = [passage(context="x" * 20_000) for _ in range(4)]
    response = client.post("/v1/runs", json={"passages": records})
    assert response.status_code == 413
    assert response.json()["detail"] == bodylimit.too_large_message(MAX_BODY)


def test_a_streamed_body_over_the_limit_is_413_by_counting(client):
    chunk = json.dumps({"passages": [passage(context="x" * 20_000)] * 4}).encode()

    def chunks() -> Iterator[bytes]:  # no Content-Length: sent chunked
        for start in range(0, len(chunk), 8192):
            yield chunk[start : start + 8192]

    response = client.post("/v1/runs", content=chunks(), headers={"content-type": "application/json"})
    assert response.status_code == 413
    assert "SEAL_COORDINATOR_MAX_BODY_BYTES" in response.json()["detail"]


# --- What pydantic's lax mode let through (issue 34, item 2) -----------------------------------------------

LONE = "\ud800"  # a lone surrogate: JSON's "\ud800", which Python's json decodes; UTF-8 cannot encode it
HELD_OUT = passage(context="Another passage, held out from training.")


def teacher(**changes: Any) -> dict[str, Any]:
    return {
        "name": "gpt",
        "passages": [{"context": HELD_OUT["context"], "completions": ["a fact"]}],
        **changes,
    }


@pytest.mark.parametrize(
    ("body", "where"),
    [
        ({"passages": [passage(context=f"The bell {LONE} rang.")]}, "body.passages: [0].context"),
        ({"passages": [passage(title=LONE)]}, "body.passages: [0].title"),
        (
            {"passages": [passage(questions=[question(question=LONE)])]},
            "body.passages: [0].questions[0].question",
        ),
        (
            {"passages": [passage(questions=[question(answer="Pell" + LONE)])]},
            "body.passages: [0].questions[0].answer",
        ),
        (
            {"passages": [passage(questions=[question(answer=None, answers=["x", "\udfff"])])]},
            "body.passages: [0].questions[0].answers[1]",
        ),
        ({"passages": [passage(**{LONE: "x"})]}, "body.passages: a key in [0]"),
        (
            {"passages": [PASSAGE], "heldout_passages": [passage(context=LONE)]},
            "body.heldout_passages: [0].context",
        ),
        (
            {
                "passages": [PASSAGE],
                "heldout_passages": [HELD_OUT],
                "teachers": [teacher(passages=[{"context": HELD_OUT["context"], "completions": [LONE]}])],
            },
            "body.teachers.0.passages: [0].completions[0]",
        ),
        ({"dataset": "demo", "name": LONE}, "body.name"),
        ({"dataset": "demo", "config": {"formats": [LONE]}}, "body.config.formats.0"),
        ({"dataset": "demo", "config": {"policy_adapter_key": LONE}}, "body.config.policy_adapter_key"),
    ],
)
def test_text_utf8_cannot_encode_is_a_422_that_names_the_field(client, body, where):
    """It was a 500 from hashing the passage id (or writing the run's spec), which also dropped the
    connection; now the schema refuses it, wherever in the body it is."""
    message = refused(client, json.dumps(body))  # ASCII: the surrogate as the escape a client sends
    assert message.startswith(where), message
    assert "\\ud800" not in message and "\\udfff" not in message  # the input is not echoed
    assert client.get("/v1/runs").status_code == 200


def test_the_surrogate_refusal_has_the_validation_error_body(client):
    body = json.dumps({"passages": [passage(context=LONE)]})
    response = client.post("/v1/runs", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 422
    assert response.json() == {
        "code": "validation_error",
        "message": "body.passages: [0].context holds a lone surrogate (U+D800) at character 0: not text "
        "that can be encoded as UTF-8",
        "detail": [
            {
                "loc": ["body", "passages"],
                "msg": "[0].context holds a lone surrogate (U+D800) at character 0: not text that can be "
                "encoded as UTF-8",
                "type": "string_unicode",
            }
        ],
    }


@pytest.mark.parametrize(
    ("body", "where"),
    [
        ({"dataset": "demo", "limit": 1, "config": {"k": True}}, "body.config.k"),
        ({"dataset": "demo", "limit": 1, "config": {"temperature": False}}, "body.config.temperature"),
        ({"dataset": "demo", "limit": True}, "body.limit"),
        (
            {"dataset": "demo", "limit": 1, "config": {"policy_directive": {"lora_rank": True}}},
            "body.config.policy_directive.lora_rank",
        ),
        (
            {"dataset": "demo", "limit": 1, "config": {"directive_search": [{"epochs": True}]}},
            "body.config.directive_search.0.epochs",
        ),
        (
            {
                "passages": [PASSAGE],
                "heldout_passages": [HELD_OUT],
                "teachers": [teacher(completion_index=True)],
            },
            "body.teachers.0.completion_index",
        ),
    ],
)
def test_true_or_false_where_a_number_is_meant_is_refused(client, body, where):
    assert f"{where}: Input should be a number, not true or false" in refused(client, body)


@pytest.mark.parametrize(
    ("record", "message"),
    [
        (
            passage(titel="A typo"),
            "request body 'passages': record 0: unknown field 'titel' (a passage has 'id', 'title', "
            "'context', 'questions')",
        ),
        (
            passage(questions=[question(hint="bells")]),
            "question 0: unknown field 'hint' (a question has 'question', 'answer', 'answers')",
        ),
    ],
)
def test_a_field_a_passage_does_not_have_is_refused(client, record, message):
    assert message in refused(client, {"passages": [record]})
    assert message.replace("'passages'", "'heldout_passages'") in refused(
        client, {"passages": [PASSAGE], "heldout_passages": [record]}
    )
