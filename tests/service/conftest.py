"""The model services: generator, trainer and evaluator as real gRPC servers on ephemeral ports, sharing
one store. The embedded model is loaded once per service (from the converted cache; the first session
converts it). Here, not in tests/conftest.py, so that collecting tests/unit imports no model service
(`make test-light` runs tests/unit without torch)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from seal.v1 import evaluator_pb2_grpc, generator_pb2_grpc, trainer_pb2_grpc
from seal_lab.serve.host import ModelHost
from seal_lab.settings import ModelSettings
from seal_lab.store.local import LocalStore
from services.evaluator.server import EvaluatorServicer
from services.evaluator.settings import EvaluatorSettings
from services.generator.server import GeneratorServicer
from services.trainer.server import TrainerServicer
from services.trainer.settings import TrainerSettings
from tests.grpc_harness import ServerThread, serve

#: Small limits so that service tests train in seconds; the generator clamps directives to them. The default
#: directive's 24-step budget is clamped to 10 (the trainer publishes its clamped default, so the coordinator
#: and generator plan with it too); a directive sent straight to the trainer must stay within them.
TEST_TRAINER_SETTINGS = TrainerSettings(max_epochs=2, max_max_length=128, max_steps=10)


@pytest.fixture(scope="session")
def model_settings() -> ModelSettings:
    return ModelSettings(name="embedded:smollm2-135m-instruct", device="cpu", dtype="float32")


@pytest.fixture(scope="session")
def shared_store(tmp_path_factory: pytest.TempPathFactory) -> LocalStore:
    return LocalStore(tmp_path_factory.mktemp("shared-store"))


@pytest.fixture(scope="session")
def generator_server(shared_store: LocalStore, model_settings: ModelSettings) -> Iterator[ServerThread]:
    servicer = GeneratorServicer(shared_store, ModelHost("generator", model_settings))
    server = serve(servicer, "seal.v1.Generator", generator_pb2_grpc.add_GeneratorServicer_to_server)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def trainer_server(shared_store: LocalStore, model_settings: ModelSettings) -> Iterator[ServerThread]:
    servicer = TrainerServicer(shared_store, ModelHost("trainer", model_settings), TEST_TRAINER_SETTINGS)
    server = serve(servicer, "seal.v1.Trainer", trainer_pb2_grpc.add_TrainerServicer_to_server)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def evaluator_server(shared_store: LocalStore, model_settings: ModelSettings) -> Iterator[ServerThread]:
    servicer = EvaluatorServicer(shared_store, ModelHost("evaluator", model_settings), EvaluatorSettings())
    server = serve(servicer, "seal.v1.Evaluator", evaluator_pb2_grpc.add_EvaluatorServicer_to_server)
    yield server
    server.stop()
