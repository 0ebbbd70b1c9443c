"""SEAL's judge in the evaluator, end to end: a real gRPC evaluator on a tiny model asks a stub
OpenAI-compatible judge on loopback about every answer. Verdicts are part of the evaluation cache key, a
failing judge fails the request with a clear status, and without a judge nothing changes."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest

from seal.v1 import common_pb2, evaluator_pb2, evaluator_pb2_grpc
from seal_lab.serve.host import ModelHost
from seal_lab.settings import ModelSettings
from seal_lab.store.local import LocalStore
from services.evaluator.answering import QuestionItem
from services.evaluator.judge import grade_prompt
from services.evaluator.server import EvaluatorServicer
from services.evaluator.settings import EvaluatorSettings
from tests.grpc_harness import ServerThread, serve
from tests.judge_stub import Failure, JudgeStub
from tests.tiny_model import tiny_llama

QUESTIONS = [
    QuestionItem("q0", "Who cast the Vellum Bell?", ("Pell Arrowby",), topic="The Vellum Bell"),
    QuestionItem("q1", "In which year was the Vellum Bell cast?", ("1712",), topic="The Vellum Bell"),
    QuestionItem("q2", "What is the capital of France?", ("Paris",)),
]


def _says_yes(prompt: str) -> bool:
    """The stub's rule: yes about questions on the bell, no about the others (the tiny model's answers are
    noise, so the rule looks at the question)."""
    return "Topic: The Vellum Bell" in prompt


@pytest.fixture(scope="module")
def stub() -> Iterator[JudgeStub]:
    with JudgeStub(rule=_says_yes) as running:
        yield running


@pytest.fixture(scope="module")
def host(tmp_path_factory) -> ModelHost:
    """The tiny random model, without a chat template: its prompt then ends in "Answer:" and the untrained
    model repeats that colon, an answer with text (after a chat template's assistant header it repeats the
    newline: every answer empty, and an empty answer is "no" without asking the judge)."""
    directory = tmp_path_factory.mktemp("tiny-llama")
    tiny_llama(directory)
    (directory / "chat_template.jinja").unlink(missing_ok=True)
    return ModelHost("evaluator", ModelSettings(name=str(directory), device="cpu", dtype="float32"))


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> LocalStore:
    return LocalStore(tmp_path_factory.mktemp("judge-store"))


@pytest.fixture(scope="module")
def servers(host, store, stub) -> Iterator[dict[str, ServerThread]]:
    """Evaluators sharing one model and one store: without a judge, with one, and with another judge model."""
    judge = {"judge_base_url": stub.base_url, "judge_api_key": "sk-stub", "judge_max_retries": 0}
    settings = {
        "off": EvaluatorSettings(),
        "on": EvaluatorSettings(**judge, judge_model="stub-judge"),
        "other": EvaluatorSettings(**judge, judge_model="stub-judge-2"),
    }
    servicers = {name: EvaluatorServicer(store, host, s) for name, s in settings.items()}
    running = {
        name: serve(servicer, "seal.v1.Evaluator", evaluator_pb2_grpc.add_EvaluatorServicer_to_server)
        for name, servicer in servicers.items()
    }
    yield running
    for name, server in running.items():
        server.stop()
        if servicers[name].judge is not None:
            servicers[name].judge.close()


def _evaluate(
    server: ServerThread, questions=QUESTIONS, max_new_tokens: int = 6
) -> evaluator_pb2.AdapterEvaluation:
    stub = evaluator_pb2_grpc.EvaluatorStub(server.channel())
    request = evaluator_pb2.EvaluateRequest(
        questions=[
            evaluator_pb2.Question(
                question_id=q.question_id, question=q.question, answers=q.answers, topic=q.topic
            )
            for q in questions
        ],
        adapter_keys=[""],
        max_new_tokens=max_new_tokens,
    )
    (evaluation,) = stub.Evaluate(request, timeout=120).evaluations
    return evaluation


def test_every_answer_is_judged_with_seals_prompt_end_to_end(servers, stub):
    stub.requests.clear()
    evaluation = _evaluate(servers["on"], max_new_tokens=5)
    answers = list(evaluation.answers)
    assert all(a.answer.strip() for a in answers)  # the tiny model's colons: every answer is judged
    assert all(a.scores.HasField("judge") for a in answers) and evaluation.mean.HasField("judge")
    # Each answer with text was asked about once, with SEAL's prompt; an empty answer is "no" unasked.
    asked = [grade_prompt(q, a.answer) for q, a in zip(QUESTIONS, answers, strict=True) if a.answer.strip()]
    assert sorted(stub.prompts()) == sorted(asked)
    assert {r["body"]["model"] for r in stub.requests} <= {"stub-judge"}
    assert all(r["authorization"] == "Bearer sk-stub" for r in stub.requests)
    expected = [
        float(bool(a.answer.strip()) and _says_yes(grade_prompt(q, a.answer)))
        for q, a in zip(QUESTIONS, answers, strict=True)
    ]
    assert [a.scores.judge for a in answers] == expected
    assert evaluation.mean.judge == pytest.approx(sum(expected) / len(expected))
    # The ordinary metrics are there as always.
    assert evaluation.mean.token_recall >= 0 and evaluation.mean_gold_logprob < 0


def test_an_evaluation_cached_without_verdicts_is_not_reused_when_the_judge_is_on(servers, stub):
    questions = [
        *QUESTIONS[:2],
        QuestionItem("q9", "Who rang the Vellum Bell?", ("a monk",), topic="The Vellum Bell"),
    ]
    plain = _evaluate(servers["off"], questions)
    assert not plain.cached and not plain.mean.HasField("judge")
    assert not any(a.scores.HasField("judge") for a in plain.answers)
    stub.requests.clear()
    judged = _evaluate(servers["on"], questions)
    assert not judged.cached and judged.mean.HasField("judge")
    asked = len(stub.requests)
    assert asked == len(questions)  # one verdict per answer (the tiny model's answers all have text)
    again = _evaluate(servers["on"], questions)  # verdicts cached with the answers: nothing asked again
    assert again.cached and again.mean.judge == judged.mean.judge and len(stub.requests) == asked
    other = _evaluate(servers["other"], questions)  # another judge model: its own verdicts
    assert not other.cached and other.mean.HasField("judge")
    assert {r["body"]["model"] for r in stub.requests[asked:]} <= {"stub-judge-2"}
    # Without the judge the evaluation is the one cached before, untouched.
    assert _evaluate(servers["off"], questions).cached


def test_a_failing_judge_fails_the_request_with_a_clear_status_and_caches_nothing(servers, stub):
    questions = [QuestionItem("q5", "Who tuned the Vellum Bell?", ("Ada Pell",), topic="The Vellum Bell")]
    stub.always = Failure(401)
    try:
        with pytest.raises(grpc.RpcError) as refused:
            _evaluate(servers["on"], questions, max_new_tokens=3)
        assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "refused the API key" in refused.value.details()
        stub.always = Failure(503)
        with pytest.raises(grpc.RpcError) as down:
            _evaluate(servers["on"], questions, max_new_tokens=3)
        assert down.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "judge endpoint answered HTTP 503" in down.value.details()
    finally:
        stub.always = None
    evaluation = _evaluate(servers["on"], questions, max_new_tokens=3)
    assert not evaluation.cached and evaluation.mean.HasField("judge")


def test_get_info_says_whether_a_judge_is_on_and_its_model_but_not_where(servers, stub):
    def runtime(name: str) -> dict[str, str]:
        stub_ = evaluator_pb2_grpc.EvaluatorStub(servers[name].channel())
        return dict(stub_.GetInfo(common_pb2.GetInfoRequest(), timeout=30).runtime)

    on, off = runtime("on"), runtime("off")
    assert on["judge"] == "on" and on["judge_model"] == "stub-judge"
    assert off["judge"] == "off" and "judge_model" not in off
    assert not any("127.0.0.1" in v or "sk-stub" in v for v in on.values())
