"""The generator with an OpenAI-compatible teacher: a real HTTP server on loopback plays the endpoint."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator

import grpc
import pytest
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from seal.v1 import common_pb2, generator_pb2, generator_pb2_grpc
from seal_lab.formats.directive import DirectiveLimits
from seal_lab.serve.host import ModelHost
from services.coordinator.cli.launcher import free_ports
from services.generator.backends import OpenAIBackend
from services.generator.server import GeneratorServicer
from tests.grpc_harness import ServerThread, serve

TEACHER_TEXT = (
    "1. The Tidewright was built in 1921 by Halvard Pike.\n"
    "2. Only 38 Tidewright clocks were ever sold.\n"
    "Training: epochs=4 learning_rate=0.0005 lora_rank=8 lora_alpha=16 batch_size=2 max_length=200"
)


class FakeTeacher:
    """Answers /v1/chat/completions like an OpenAI-compatible server; records what it was sent."""

    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.reply = TEACHER_TEXT
        self.status = 200
        #: Answers to send before `status`, each (status, headers): a teacher that fails, then recovers.
        self.first: list[tuple[int, dict[str, str]]] = []
        #: Seconds to wait before answering: every request, and (`slow_first`) the next few, in order.
        self.delay_seconds = 0.0
        self.slow_first: list[float] = []
        app = FastAPI()

        @app.post("/v1/chat/completions")
        async def complete(request: Request) -> JSONResponse:
            body = await request.json()
            self.requests.append({"body": body, "auth": request.headers.get("authorization")})
            await asyncio.sleep(self.slow_first.pop(0) if self.slow_first else self.delay_seconds)
            if self.first:
                status, headers = self.first.pop(0)
                return JSONResponse({"error": {"message": f"status {status}"}}, status, headers)
            if self.status != 200:
                return JSONResponse({"error": "overloaded"}, status_code=self.status)
            return JSONResponse(
                {
                    "choices": [{"message": {"role": "assistant", "content": self.reply}}],
                    "usage": {"completion_tokens": 42},
                }
            )

        (self.port,) = free_ports(1)
        self.server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> FakeTeacher:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(5)


@pytest.fixture(scope="module")
def teacher() -> Iterator[FakeTeacher]:
    with FakeTeacher() as running:
        yield running


@pytest.fixture(scope="module")
def teacher_generator(teacher, shared_store, model_settings) -> Iterator[ServerThread]:
    backend = OpenAIBackend(
        f"http://127.0.0.1:{teacher.port}/v1",
        "teacher-model",
        "sk-test",
        timeout_seconds=10,
        max_retries=2,
        initial_backoff_seconds=0.01,
    )
    servicer = GeneratorServicer(shared_store, ModelHost("generator", model_settings), remote=backend)
    server = serve(servicer, "seal.v1.Generator", generator_pb2_grpc.add_GeneratorServicer_to_server)
    yield server
    server.stop()


def _generate(server: ServerThread, samples: int = 2) -> generator_pb2.GenerateResponse:
    stub = generator_pb2_grpc.GeneratorStub(server.channel())
    request = generator_pb2.GenerateRequest(
        passage=generator_pb2.Passage(
            passage_id="p-tide", title="Tide clock", context="Halvard Pike built it."
        ),
        format="implications",
        num_samples=samples,
        sampling=generator_pb2.SamplingParams(temperature=0.5, top_p=0.9, max_new_tokens=300, seed=5),
        limits=DirectiveLimits().to_proto(),
    )
    return stub.Generate(request, timeout=60)


def test_teacher_self_edits_are_parsed_and_stored(teacher, teacher_generator, shared_store):
    teacher.requests.clear()
    response = _generate(teacher_generator)
    assert response.model_fingerprint == "remote:teacher-model"
    assert len(teacher.requests) == 2
    sent = teacher.requests[0]
    assert sent["auth"] == "Bearer sk-test"
    assert sent["body"]["model"] == "teacher-model" and sent["body"]["seed"] == 5
    assert "Halvard Pike built it." in sent["body"]["messages"][0]["content"]
    assert [r["body"]["seed"] for r in teacher.requests] == [5, 6]  # one seed per sample
    edit = response.self_edits[0]
    assert edit.directive_source == generator_pb2.DIRECTIVE_SOURCE_PARSED
    assert (edit.directive.epochs, edit.directive.lora_rank, edit.directive.max_length) == (4, 8, 200)
    records = [json.loads(line) for line in shared_store.get_bytes(edit.dataset_key).decode().splitlines()]
    assert records[0]["backend"] == "openai" and records[0]["generator_model"] == "teacher-model"
    assert [r["completion"] for r in records[1:]] == [  # each after the passage's title (SEAL's format)
        "Tide clock\nThe Tidewright was built in 1921 by Halvard Pike.",
        "Tide clock\nOnly 38 Tidewright clocks were ever sold.",
    ]


def test_teacher_output_without_a_directive_gets_the_default(teacher, teacher_generator):
    teacher.reply = "1. The clock is brass and has eleven gears."
    try:
        edit = _generate(teacher_generator, samples=1).self_edits[0]
    finally:
        teacher.reply = TEACHER_TEXT
    assert edit.directive_source == generator_pb2.DIRECTIVE_SOURCE_DEFAULT
    assert edit.directive.epochs == DirectiveLimits().default.epochs
    assert "no directive" in edit.directive_notes[0]


def test_a_failing_teacher_is_unavailable_not_internal(teacher, teacher_generator):
    teacher.status = 503
    try:
        with pytest.raises(grpc.RpcError) as error:
            _generate(teacher_generator, samples=1)
    finally:
        teacher.status = 200
    assert error.value.code() == grpc.StatusCode.UNAVAILABLE  # the coordinator retries these
    assert "503" in error.value.details()


def test_a_teacher_that_refuses_the_key_fails_at_once_without_the_key(teacher, teacher_generator):
    teacher.status = 401
    teacher.requests.clear()
    try:
        with pytest.raises(grpc.RpcError) as error:
            _generate(teacher_generator, samples=1)
    finally:
        teacher.status = 200
    assert error.value.code() == grpc.StatusCode.FAILED_PRECONDITION  # the coordinator does not retry it
    assert "HTTP 401" in error.value.details() and "SEAL_GENERATOR_OPENAI_API_KEY" in error.value.details()
    assert "sk-test" not in error.value.details() and "127.0.0.1" not in error.value.details()
    assert len(teacher.requests) == 1


def test_a_busy_teacher_is_waited_for_as_it_says(teacher, teacher_generator):
    teacher.first = [(429, {"Retry-After": "0"}), (503, {})]
    teacher.requests.clear()
    assert len(_generate(teacher_generator, samples=1).self_edits) == 1
    assert len(teacher.requests) == 3


def test_teacher_generator_reports_its_backend(teacher_generator):
    info = generator_pb2_grpc.GeneratorStub(teacher_generator.channel()).GetInfo(
        common_pb2.GetInfoRequest(), timeout=5
    )
    assert info.backend == "openai" and info.model_name == "teacher-model" and "self-qa" in info.formats
