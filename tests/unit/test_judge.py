"""SEAL's judge client against a stub OpenAI-compatible server on loopback: SEAL's prompt and parsing,
retries that honour Retry-After, clear errors instead of silent zeros, and the settings that turn it on."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from seal_lab.errors import FailedPrecondition, Unavailable
from seal_lab.openai_client import retry_after_seconds
from services.coordinator.cli.launcher import free_ports
from services.evaluator.answering import QuestionItem, question_set_hash
from services.evaluator.judge import (
    SEAL_GRADE_TEMPLATE,
    Judge,
    add_verdicts,
    grade_prompt,
    parse_yes_no,
)
from services.evaluator.settings import EvaluatorSettings
from tests.judge_stub import Failure, JudgeStub

BELL = QuestionItem(
    "q0", "Who cast the Vellum Bell?", ("", "Pell Arrowby", "Arrowby"), topic="The Vellum Bell"
)
PARIS = QuestionItem("q1", "What is the capital of France?", ("Paris",))


@pytest.fixture
def stub() -> Iterator[JudgeStub]:
    with JudgeStub() as running:
        yield running


@pytest.fixture
def make_judge(stub: JudgeStub) -> Iterator[Callable[..., tuple[Judge, list[float]]]]:
    """Judges of the stub whose waits are recorded, not slept; closed after the test."""
    made: list[Judge] = []

    def make(**kwargs) -> tuple[Judge, list[float]]:
        sleeps: list[float] = []
        key = kwargs.pop("api_key", "sk-test")
        made.append(Judge(stub.base_url, "judge-model", key, sleep=sleeps.append, **kwargs))
        return made[-1], sleeps

    yield make
    for judge in made:
        judge.close()


def test_the_grading_prompt_is_seals_verbatim():
    # sha256 of SQUAD_GRADE_TEMPLATE in Continual-Intelligence/SEAL knowledge-incorporation/src/utils.py @ 4cb1e7d.
    digest = hashlib.sha256(SEAL_GRADE_TEMPLATE.encode()).hexdigest()
    assert digest == "09bcea15e7cfaf07cf178f6b5382d3a2a475cf893925073cffe142848625734b"
    # SEAL's question carries its "Topic:" line; the gold is the first non-empty one; the answer is stripped.
    assert grade_prompt(BELL, "  It was Pell Arrowby.\n") == (
        "You are a grading assistant. Your job is to determine whether a student's answer correctly answers "
        "the question based solely on the provided gold answer. Do not use any outside knowledge. The student "
        "answer can include additional information, but it must at least fully convey the gold answer and "
        "must not contradict it. Ignore style, phrasing, or extra details that do not affect correctness. "
        "Respond ONLY with 'yes' or 'no'.\n\n"
        "Question: Topic: The Vellum Bell\nWho cast the Vellum Bell?\nGold answer: Pell Arrowby\n"
        "Student answer: It was Pell Arrowby.\n"
        "Is the student answer correct based solely on the gold answer? Respond 'yes' or 'no'."
    )
    assert "Question: What is the capital of France?\nGold answer: Paris\n" in grade_prompt(PARIS, "Paris")


@pytest.mark.parametrize(
    ("reply", "verdict"),
    [
        ("yes", True),
        ("Yes.", True),
        ("YES, the student is right", True),
        ("no", False),
        ("No.", False),
        ("yes and no", False),  # ambiguous: SEAL says no
        ("Yesterday", False),  # whole words only
        ("maybe", False),
    ],
)
def test_replies_are_parsed_as_seal_does(reply, verdict):
    assert parse_yes_no(reply) is verdict


def test_the_judge_asks_seals_prompt_with_its_model_at_temperature_zero(stub, make_judge):
    judge, _ = make_judge(max_tokens=7)
    prompts = [grade_prompt(BELL, "Pell Arrowby cast it"), grade_prompt(PARIS, "Lyon")]
    assert judge.verdicts(prompts) == [True, False]
    assert sorted(stub.prompts()) == sorted(prompts)
    for request in stub.requests:
        assert request["path"] == "/v1/chat/completions"
        assert request["authorization"] == "Bearer sk-test"
        body = request["body"]
        assert body["model"] == "judge-model" and body["temperature"] == 0 and body["max_tokens"] == 7
        assert [m["role"] for m in body["messages"]] == ["user"]  # SEAL sends the prompt as the only message


def test_a_rate_limit_is_waited_out_for_as_long_as_retry_after_says(stub, make_judge):
    stub.failures = [Failure(429, {"Retry-After": "3"})]
    judge, sleeps = make_judge()
    assert judge.verdicts([grade_prompt(PARIS, "Paris")]) == [True]
    assert sleeps == [3.0] and len(stub.requests) == 2


def test_a_retry_after_beyond_the_limit_fails_at_once_as_unavailable(stub, make_judge):
    stub.failures = [Failure(429, {"Retry-After": "600"})]
    judge, sleeps = make_judge(max_retry_wait_seconds=30)
    with pytest.raises(Unavailable, match="asks to wait 600s"):
        judge.verdicts([grade_prompt(PARIS, "Paris")])
    assert sleeps == [] and len(stub.requests) == 1


def test_server_errors_are_retried_a_bounded_number_of_times_then_unavailable(stub, make_judge):
    stub.always = Failure(503)
    judge, sleeps = make_judge(max_retries=2)
    with pytest.raises(Unavailable, match=r"answered HTTP 503 Service Unavailable: .*\(after 3 tries\)"):
        judge.verdicts([grade_prompt(PARIS, "Paris")])
    assert len(stub.requests) == 3 and len(sleeps) == 2 and all(0 < s <= 30 for s in sleeps)


def test_a_refused_key_is_failed_precondition_at_once_and_the_reply_is_not_echoed(stub, make_judge):
    stub.always = Failure(401, body='{"error": {"message": "Incorrect API key provided: sk-tes*"}}')
    judge, sleeps = make_judge()
    with pytest.raises(FailedPrecondition, match="refused the API key") as caught:
        judge.verdicts([grade_prompt(PARIS, "Paris")])
    assert "sk-tes" not in caught.value.message
    assert len(stub.requests) == 1 and sleeps == []


def test_an_unknown_model_is_failed_precondition_with_the_endpoints_reason(stub, make_judge):
    stub.always = Failure(404, body='{"error": {"message": "The model judge-model does not exist"}}')
    judge, _ = make_judge()
    with pytest.raises(FailedPrecondition, match="does not exist"):
        judge.verdicts([grade_prompt(PARIS, "Paris")])


def test_an_empty_reply_is_an_error_not_a_no(stub, make_judge):
    stub.reply = ""
    judge, _ = make_judge()
    with pytest.raises(FailedPrecondition, match="JUDGE_MAX_TOKENS"):
        judge.verdicts([grade_prompt(PARIS, "Paris")])


def test_an_unreachable_endpoint_is_unavailable_after_its_retries():
    (port,) = free_ports(1)
    sleeps: list[float] = []
    judge = Judge(f"http://127.0.0.1:{port}/v1", "m", max_retries=1, sleep=sleeps.append)
    with pytest.raises(Unavailable, match=r"unreachable \(ConnectError\) \(after 2 tries\)"):
        judge.verdicts([grade_prompt(PARIS, "Paris")])
    judge.close()
    assert len(sleeps) == 1


def test_retry_after_is_read_as_seconds_or_as_a_date():
    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
    assert retry_after_seconds("2", now) == 2.0
    assert retry_after_seconds("Thu, 01 Jan 2026 12:00:05 GMT", now) == 5.0
    assert retry_after_seconds("Thu, 01 Jan 2026 11:00:00 GMT", now) == 0.0
    assert retry_after_seconds("soon", now) is None and retry_after_seconds(None, now) is None


def test_verdicts_join_the_scores_and_an_empty_answer_is_no_without_asking(stub, make_judge):
    judge, _ = make_judge()
    record = {
        "mean": {"f1": 0.0},
        "answers": [
            {"question_id": "q0", "answer": "Pell Arrowby", "scores": {"f1": 1.0}},
            {"question_id": "q1", "answer": "", "scores": {"f1": 0.0}},
        ],
    }
    other = {"mean": {}, "answers": [{"question_id": "q1", "answer": "Rome", "scores": {}}]}
    add_verdicts(judge, [([BELL, PARIS], record), ([PARIS], other)])
    assert [a["scores"]["judge"] for a in record["answers"]] == [1.0, 0.0]
    assert record["mean"]["judge"] == 0.5 and other["mean"]["judge"] == 0.0
    assert len(stub.requests) == 2  # the empty answer was not sent


def test_the_cache_key_names_the_judge_and_is_unchanged_without_one():
    questions = [
        QuestionItem("q0", "Who cast the Vellum Bell?", ("Pell Arrowby",), topic="The Vellum Bell"),
        QuestionItem("q1", "Capital of France?", ("Paris",)),
    ]
    # The hash the evaluator gave before the judge existed: evaluations cached without a judge stay valid.
    assert question_set_hash(questions, 8) == "10a42702a26c3b34fba5ac47303ae150"
    one = Judge("http://127.0.0.1:1/v1", "gpt-4.1")
    other = Judge("http://127.0.0.1:1/v1", "gpt-4o")
    judged = question_set_hash(questions, 8, one.identity)
    assert judged != question_set_hash(questions, 8)
    assert judged != question_set_hash(questions, 8, other.identity)
    assert judged == question_set_hash(questions, 8, Judge("http://elsewhere:2/v1", "gpt-4.1").identity)


def test_the_judge_is_off_by_default_and_needs_a_model(monkeypatch):
    for name in ("BASE_URL", "MODEL", "API_KEY", "API_KEY_FILE"):
        monkeypatch.delenv(f"SEAL_EVALUATOR_JUDGE_{name}", raising=False)
    settings = EvaluatorSettings()
    assert not settings.judge_enabled and Judge.from_settings(settings) is None
    with pytest.raises(ValueError, match="needs SEAL_EVALUATOR_JUDGE_MODEL"):
        EvaluatorSettings(judge_base_url="http://127.0.0.1:1/v1")
    with pytest.raises(ValueError, match="must start with http"):
        EvaluatorSettings(judge_base_url="127.0.0.1:1/v1", judge_model="m")


def test_the_judge_key_can_come_from_a_file_but_not_from_both(tmp_path: Path):
    key_file = tmp_path / "judge-key"
    key_file.write_text("sk-from-file\n")
    settings = EvaluatorSettings(judge_base_url="http://h/v1", judge_model="m", judge_api_key_file=key_file)
    assert settings.judge_api_key.get_secret_value() == "sk-from-file"
    with pytest.raises(ValueError, match="not both") as caught:
        EvaluatorSettings(judge_model="m", judge_api_key="sk-x", judge_api_key_file=key_file)
    assert "sk-x" not in str(caught.value)  # hide_input_in_errors
    with pytest.raises(ValueError, match="cannot read"):
        EvaluatorSettings(judge_model="m", judge_api_key_file=tmp_path / "missing")
