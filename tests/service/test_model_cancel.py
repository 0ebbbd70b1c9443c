"""The generator and the evaluator on a tiny model: a call whose caller goes away (cancelled, past its
deadline) stops its model work within a decoding step, leaves the model worker to the next call at once, and
stores nothing. The model's forward passes are counted: that count must stop growing, not only the call."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest

from seal.v1 import evaluator_pb2, evaluator_pb2_grpc, generator_pb2, generator_pb2_grpc
from seal_lab.formats.directive import DirectiveLimits
from seal_lab.serve.host import ModelHost
from seal_lab.settings import ModelSettings
from seal_lab.store.local import LocalStore
from services.evaluator.server import EvaluatorServicer
from services.evaluator.settings import EvaluatorSettings
from services.generator.server import MAX_NEW_TOKENS, MAX_SAMPLES, GeneratorServicer
from tests.grpc_harness import ServerThread, serve
from tests.tiny_model import tiny_llama

PASSAGE = generator_pb2.Passage(passage_id="p", title="Bells", context="The Ostrany bell rings on Sundays.")
#: Rows per evaluator batch and questions in a long evaluation: the tiny random model never writes a newline
#: under greedy decoding, so each batch runs to max_new_tokens (512, about 4 s here): minutes in all.
EVAL_BATCH = 8
LONG_QUESTIONS = 64


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> str:
    return tiny_llama(tmp_path_factory.mktemp("tiny-llama"))


def _model_settings(model: str) -> ModelSettings:
    return ModelSettings(name=model, device="cpu", dtype="float32", torch_threads=1)


class Forwards:
    """Counts the forward passes of a service's model (one per decoding step, one per likelihood batch)."""

    def __init__(self, model: Any) -> None:
        self.count = 0
        self._hook = model.register_forward_hook(self._seen)

    def _seen(self, *_: Any) -> None:
        self.count += 1

    def remove(self) -> None:
        self._hook.remove()


@dataclass
class Served:
    server: ServerThread
    servicer: Any
    store: LocalStore
    forwards: Forwards


@pytest.fixture
def generator(tmp_path: Path, tiny_model: str) -> Iterator[Served]:
    store = LocalStore(tmp_path / "store")
    servicer = GeneratorServicer(store, ModelHost("generator", _model_settings(tiny_model)))
    server = serve(servicer, "seal.v1.Generator", generator_pb2_grpc.add_GeneratorServicer_to_server)
    forwards = Forwards(servicer.host.loaded.model)
    yield Served(server, servicer, store, forwards)
    forwards.remove()
    server.stop()


@pytest.fixture
def evaluator(tmp_path: Path, tiny_model: str) -> Iterator[Served]:
    store = LocalStore(tmp_path / "store")
    settings = EvaluatorSettings(batch_size=EVAL_BATCH)
    servicer = EvaluatorServicer(store, ModelHost("evaluator", _model_settings(tiny_model)), settings)
    server = serve(servicer, "seal.v1.Evaluator", evaluator_pb2_grpc.add_EvaluatorServicer_to_server)
    forwards = Forwards(servicer.host.loaded.model)
    yield Served(server, servicer, store, forwards)
    forwards.remove()
    server.stop()


def _until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"not within {timeout}s: {what}")
        time.sleep(0.02)


def _stops_decoding(forwards: Forwards, timeout: float = 5.0, quiet: float = 0.5) -> None:
    """The model thread makes no forward pass for `quiet` seconds, within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        seen = forwards.count
        time.sleep(quiet)
        if forwards.count == seen:
            return
    raise AssertionError(
        f"the model still decodes {timeout}s after the call ended ({forwards.count} forwards)"
    )


def _generate_request(max_new_tokens: int, num_samples: int) -> generator_pb2.GenerateRequest:
    return generator_pb2.GenerateRequest(
        passage=PASSAGE,
        format="implications",
        num_samples=num_samples,
        sampling=generator_pb2.SamplingParams(
            temperature=1.0, top_p=1.0, max_new_tokens=max_new_tokens, seed=3
        ),
        limits=DirectiveLimits().to_proto(),
        include_passage=True,
    )


#: At about 25 decoding steps a second here (16 samples, one thread), minutes of generation.
LONG_GENERATE = _generate_request(MAX_NEW_TOKENS, MAX_SAMPLES)


def _small_generate_is_prompt(stub: generator_pb2_grpc.GeneratorStub) -> generator_pb2.GenerateResponse:
    """A small call is answered within seconds: the model worker is not busy with the ended call."""
    started = time.monotonic()
    response = stub.Generate(_generate_request(max_new_tokens=4, num_samples=1), timeout=30)
    assert time.monotonic() - started < 5
    return response


def _only_the_small_calls_datasets(store: LocalStore, small: generator_pb2.GenerateResponse) -> None:
    assert set(store.list_keys("datasets/")) == {edit.dataset_key for edit in small.self_edits}


def test_a_cancelled_generate_call_stops_generating_and_frees_the_model_worker(generator: Served):
    with generator.server.channel() as channel:
        stub = generator_pb2_grpc.GeneratorStub(channel)
        call = stub.Generate.future(LONG_GENERATE, timeout=120)
        _until(lambda: generator.forwards.count > 5 or call.done(), 30, "the long call starts generating")
        assert not call.done()
        call.cancel()
        _stops_decoding(generator.forwards)
        assert generator.servicer.calls_stopped == 1
        small = _small_generate_is_prompt(stub)
    assert call.cancelled()
    _only_the_small_calls_datasets(generator.store, small)


def test_a_generate_call_past_its_deadline_stops_generating(generator: Served):
    with generator.server.channel() as channel:
        stub = generator_pb2_grpc.GeneratorStub(channel)
        with pytest.raises(grpc.RpcError) as failed:
            stub.Generate(LONG_GENERATE, timeout=2)
        assert failed.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        _stops_decoding(generator.forwards)
        assert generator.servicer.calls_stopped == 1
        small = _small_generate_is_prompt(stub)
    _only_the_small_calls_datasets(generator.store, small)


def _evaluate_request(questions: int, max_new_tokens: int) -> evaluator_pb2.EvaluateRequest:
    return evaluator_pb2.EvaluateRequest(
        questions=[
            evaluator_pb2.Question(
                question_id=f"q{i}", question=f"When does bell {i} ring?", answers=["Sunday"]
            )
            for i in range(questions)
        ],
        max_new_tokens=max_new_tokens,
    )


def test_a_cancelled_evaluate_call_stops_answering_and_caches_nothing(evaluator: Served):
    with evaluator.server.channel() as channel:
        stub = evaluator_pb2_grpc.EvaluatorStub(channel)
        call = stub.Evaluate.future(_evaluate_request(LONG_QUESTIONS, 512), timeout=120)
        _until(lambda: evaluator.forwards.count > 5 or call.done(), 30, "the long call starts answering")
        assert not call.done()
        call.cancel()
        _stops_decoding(evaluator.forwards)
        assert evaluator.servicer.calls_stopped == 1
        started = time.monotonic()
        small = stub.Evaluate(_evaluate_request(1, max_new_tokens=4), timeout=30)
        assert time.monotonic() - started < 5 and not small.evaluations[0].cached
    assert call.cancelled()
    assert len(evaluator.store.list_keys("evaluations/")) == 1  # the small call's; none of the cancelled one
