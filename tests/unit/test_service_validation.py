"""What the model services refuse before any work (issue 12, items 3 and 7): every id, name and number a
caller sends is bounded, and a refusal quotes none of a huge value. The servicers' own checks, without a model
or a server (tests/service/test_bad_values.py sends the same through real servers)."""

from __future__ import annotations

import math
from typing import Any

import pytest

from seal.v1 import evaluator_pb2, generator_pb2, trainer_pb2
from seal_lab.errors import InvalidArgument
from seal_lab.formats.directive import DEFAULT_DIRECTIVE, DirectiveLimits
from services.evaluator.server import EvaluatorServicer
from services.evaluator.settings import EvaluatorSettings
from services.generator.server import validate_import, validate_request
from services.trainer.server import TrainerServicer
from services.trainer.settings import TrainerSettings

HUGE = "x" * 200_000


def generate(**changes: Any) -> generator_pb2.GenerateRequest:
    request = generator_pb2.GenerateRequest(
        passage=generator_pb2.Passage(passage_id="p-1", title="Bells", context="The bell is red."),
        format="implications",
        num_samples=1,
        sampling=generator_pb2.SamplingParams(temperature=0.5, top_p=0.9, max_new_tokens=8, seed=1),
        limits=DirectiveLimits().to_proto(),
        run_id="run-1",
    )
    for path, value in changes.items():
        *parents, name = path.split("__")
        message = request
        for part in parents:
            message = getattr(message, part)
        setattr(message, name, value)
    return request


def refused(check: Any, *args: Any) -> str:
    with pytest.raises(InvalidArgument) as error:
        check(*args)
    assert len(error.value.message) < 300, "a refusal quotes a huge value"
    return error.value.message


def test_a_valid_generate_request_passes():
    assert validate_request(generate()).seed == 1


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"format": HUGE}, "format has 200,000 characters; the limit is 40"),
        ({"run_id": HUGE}, "run_id has 200,000 characters"),
        ({"passage__title": HUGE}, "passage.title has 200,000 characters; the limit is 300"),
        ({"passage__passage_id": HUGE}, "passage.passage_id is 200000 characters"),
        ({"passage__passage_id": "../../etc/passwd"}, "may hold only letters"),
        ({"sampling__seed": 2**64 - 1}, "sampling.seed=18446744073709551615 must be at most"),
        ({"limits__max_learning_rate": math.nan}, "min_learning_rate=1e-05 and max_learning_rate=nan"),
        ({"limits__max_lora_rank": -5}, "are not a range"),
        ({"limits__min_steps": 500}, "min_steps=500 and max_steps=200 are not a range"),
        ({"limits__default_directive__epochs": 99}, "the default directive is outside them: epochs=99"),
        # Beyond what any trainer may publish: refused, not shown to the model nor recorded (issue 34, item 4).
        ({"limits__max_epochs": 1_000_000}, "max_epochs=1000000 is above 100"),
        ({"limits__max_lora_rank": 100_000}, "max_lora_rank=100000 is above 512"),
        ({"limits__max_learning_rate": 1e9}, "max_learning_rate=1e+09 is above 1"),
    ],
)
def test_generate_refuses_each_bad_value(changes, message):
    assert message in refused(validate_request, generate(**changes))


def test_import_bounds_its_source():
    request = generator_pb2.ImportRequest(
        passage=generate().passage, format="implications", outputs=["1. A fact."], limits=generate().limits
    )
    validate_import(request)
    request.source = HUGE
    assert "source has 200,000 characters; the limit is 200" in refused(validate_import, request)


def test_train_bounds_its_job_id():
    servicer = TrainerServicer(None, None, TrainerSettings())  # type: ignore[arg-type]
    request = trainer_pb2.TrainRequest(
        dataset_key="datasets/a.jsonl", directive=DEFAULT_DIRECTIVE.to_proto(), job_id=HUGE
    )
    assert "job_id has 200,000 characters" in refused(servicer._validate, request)


def question(**changes: Any) -> evaluator_pb2.Question:
    return evaluator_pb2.Question(
        **{"question_id": "q0", "question": "Colour?", "answers": ["red"], **changes}
    )


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        (
            evaluator_pb2.EvaluateRequest(questions=[question(answers=["a"] * 21)]),
            "has 21 answers; the limit is 20",
        ),
        (
            evaluator_pb2.EvaluateRequest(questions=[question(answers=["a" * 1001])]),
            "an answer has 1,001 characters",
        ),
        (evaluator_pb2.EvaluateRequest(questions=[question(question_id=HUGE)]), "question_id has 200,000"),
        (evaluator_pb2.EvaluateRequest(questions=[question(topic=HUGE)]), "topic has 200,000 characters"),
        (evaluator_pb2.EvaluateRequest(questions=[question()], run_id=HUGE), "run_id has 200,000"),
        (evaluator_pb2.EvaluateRequest(questions=[question()] * 501), "501 questions; the limit is 500"),
        (
            evaluator_pb2.EvaluateRequest(
                sets=[evaluator_pb2.QuestionSet(set_id=HUGE, questions=[question()])]
            ),
            "set 0: set_id has 200,000 characters",
        ),
        (evaluator_pb2.EvaluateRequest(questions=[question()], adapter_keys=["a" * 300]), "is too long"),
    ],
)
def test_evaluate_refuses_each_bad_value(request_, message):
    servicer = EvaluatorServicer(None, None, EvaluatorSettings())  # type: ignore[arg-type]
    assert message in refused(servicer._validate, request_)
