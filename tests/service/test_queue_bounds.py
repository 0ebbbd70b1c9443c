"""Every model service admits a bounded number of calls: with the bound at 1 and one call in progress, the next
call is refused at once with RESOURCE_EXHAUSTED marked busy (the trainer's bound: test_trainer_cancel.py).

Real gRPC servers with the model work replaced by a call that blocks, so no model is loaded."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace
from typing import Any

import grpc
import pytest

from seal.v1 import evaluator_pb2, evaluator_pb2_grpc, generator_pb2, generator_pb2_grpc
from seal_lab.formats.directive import DirectiveLimits
from seal_lab.model.base import ModelWorker
from seal_lab.rpc.wire import BUSY_CAUSE, CAUSE_KEY
from seal_lab.store.local import LocalStore
from services.evaluator.server import EvaluatorServicer
from services.evaluator.settings import EvaluatorSettings
from services.generator.backends import RawSelfEdit
from services.generator.server import GeneratorServicer
from tests.grpc_harness import ServerThread, serve

PASSAGE = generator_pb2.Passage(passage_id="p", title="Bells", context="The Ostrany bell rings on Sundays.")


class BlockingTeacher:
    """A remote backend that answers only when released."""

    name = "blocking"
    model_name = "blocking-teacher"

    def __init__(self) -> None:
        self.entered, self.release = threading.Event(), threading.Event()

    def write(self, prompt: str, num_samples: int, *_: Any, **__: Any) -> list[RawSelfEdit]:
        self.entered.set()
        self.release.wait(30)
        return [RawSelfEdit("Training: epochs=1", "Training: epochs=1", 3)] * num_samples


def _refused_as_busy(call: Callable[[], Any], setting: str) -> None:
    with pytest.raises(grpc.RpcError) as refused:
        call()
    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert (CAUSE_KEY, BUSY_CAUSE) in tuple(refused.value.trailing_metadata())
    assert setting in refused.value.details()


def _in_progress(call: Callable[[], Any], entered: threading.Event) -> Any:
    """Start `call` on a thread; return its future once the service is working on it."""
    future = ThreadPoolExecutor(1).submit(call)
    assert entered.wait(30), "the first call never reached the model work"
    return future


def test_a_generator_at_its_bound_refuses_generate_and_import_as_busy(tmp_path):
    teacher = BlockingTeacher()
    servicer = GeneratorServicer(LocalStore(tmp_path), None, remote=teacher, max_queued_calls=1)  # type: ignore[arg-type]
    servicer.host = SimpleNamespace(worker=ModelWorker("test-generator"))
    server: ServerThread = serve(
        servicer, "seal.v1.Generator", generator_pb2_grpc.add_GeneratorServicer_to_server
    )
    try:
        with server.channel() as channel:
            stub = generator_pb2_grpc.GeneratorStub(channel)
            limits = DirectiveLimits().to_proto()
            generate = generator_pb2.GenerateRequest(
                passage=PASSAGE,
                format="implications",
                num_samples=1,
                sampling=generator_pb2.SamplingParams(temperature=0.5, top_p=0.9, max_new_tokens=16),
                limits=limits,
            )
            first = _in_progress(lambda: stub.Generate(generate, timeout=30), teacher.entered)
            _refused_as_busy(lambda: stub.Generate(generate, timeout=30), "SEAL_GENERATOR_MAX_QUEUED_CALLS")
            imported = generator_pb2.ImportRequest(
                passage=PASSAGE, format="implications", outputs=["The bell rings weekly."], limits=limits
            )
            _refused_as_busy(lambda: stub.Import(imported, timeout=30), "SEAL_GENERATOR_MAX_QUEUED_CALLS")
            teacher.release.set()
            assert len(first.result(30).self_edits) == 1
            assert len(stub.Import(imported, timeout=30).self_edits) == 1  # admitted once the first is done
        assert servicer.call_gate.refused == 2 and servicer.call_gate.admitted == 0
    finally:
        teacher.release.set()
        server.stop()


def test_an_evaluator_at_its_bound_refuses_the_next_evaluation_as_busy(tmp_path):
    entered, release = threading.Event(), threading.Event()
    servicer = EvaluatorServicer(LocalStore(tmp_path), None, EvaluatorSettings(max_queued_calls=1))  # type: ignore[arg-type]
    servicer.host = SimpleNamespace(
        loaded=SimpleNamespace(fingerprint="sha256:test", name="test-model"), worker=ModelWorker("t")
    )

    def blocking_evaluation(
        sets: list[Any], max_new_tokens: int, *_: Any
    ) -> tuple[list[list[Any]], list[Any]]:
        entered.set()
        release.wait(30)
        record = {"mean": {}, "answers": [], "mean_gold_logprob": 0.0}
        return [[(record, False)] * len(s.keys) for s in sets], []  # (results, none awaiting a judge)

    servicer._evaluate_all = blocking_evaluation  # type: ignore[method-assign]
    server = serve(
        servicer, "seal.v1.Evaluator", evaluator_pb2_grpc.add_EvaluatorServicer_to_server, load=False
    )
    try:
        with server.channel() as channel:
            stub = evaluator_pb2_grpc.EvaluatorStub(channel)
            request = evaluator_pb2.EvaluateRequest(
                questions=[evaluator_pb2.Question(question_id="q", question="When?", answers=["Sundays"])]
            )
            first = _in_progress(lambda: stub.Evaluate(request, timeout=30), entered)
            _refused_as_busy(lambda: stub.Evaluate(request, timeout=30), "SEAL_EVALUATOR_MAX_QUEUED_CALLS")
            release.set()
            assert len(first.result(30).evaluations) == 1
        assert servicer.call_gate.refused == 1 and servicer.call_gate.admitted == 0
    finally:
        release.set()
        server.stop()
