"""Shared fixtures. Each group sits in its own delimited block; add new groups as new blocks."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from seal_lab.localstore import LocalStore
from seal_lab.s3store import S3Store
from seal_lab.store import ObjectStore
from tests.s3_server import S3ServerInfo, running_s3_server, unique_bucket

# ---------------------------------------------------------------------------------------------------------
# Object stores (seal_lab.store, seal_lab.s3store): a real SeaweedFS S3 server, started once per session.
# ---------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3ServerInfo]:
    """One SeaweedFS S3 server for the whole session (start-up takes a few seconds)."""
    with running_s3_server() as info:
        yield info


@pytest.fixture
def s3_store(s3_server: S3ServerInfo) -> Iterator[S3Store]:
    """An S3Store on a fresh bucket, deleted afterwards so a long session does not pile up volumes."""
    store = S3Store.from_settings(s3_server.store_settings(unique_bucket()))
    store.check()  # creates the bucket (building a store does no network I/O)
    yield store
    for obj in store.client.list_objects(store.bucket, recursive=True):
        store.client.remove_object(store.bucket, obj.object_name)
    store.client.remove_bucket(store.bucket)


@pytest.fixture
def local_store(tmp_path: Path) -> LocalStore:
    return LocalStore(tmp_path / "store")


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest) -> ObjectStore:
    """Each backend in turn: the ObjectStore contract is the same for both."""
    return request.getfixturevalue(f"{request.param}_store")


# ---------------------------------------------------------------------------------------------------------
# End of object stores.
# ---------------------------------------------------------------------------------------------------------


# ---------------------------------------------------------------------------------------------------------
# Model services: generator, trainer and evaluator as real gRPC servers on ephemeral ports, sharing one store.
# The embedded model is loaded once per service (from the converted cache; the first session converts it).
# ---------------------------------------------------------------------------------------------------------

from seal.v1 import evaluator_pb2_grpc, generator_pb2_grpc, trainer_pb2_grpc  # noqa: E402
from seal_lab.service import ModelHost  # noqa: E402
from seal_lab.settings import ModelSettings  # noqa: E402
from services.evaluator.server import EvaluatorServicer  # noqa: E402
from services.evaluator.settings import EvaluatorSettings  # noqa: E402
from services.generator.server import GeneratorServicer  # noqa: E402
from services.trainer.server import TrainerServicer  # noqa: E402
from services.trainer.settings import TrainerSettings  # noqa: E402
from tests.grpc_harness import ServerThread, serve  # noqa: E402

#: Small limits so that service tests train in seconds; the generator clamps directives to them.
#: Small enough for CI on two cores: the default directive's 24-step budget is clamped to 8 (the trainer publishes
#: its clamped default, so the coordinator and generator plan with it too).
TEST_TRAINER_SETTINGS = TrainerSettings(max_epochs=2, max_max_length=128, max_steps=8)


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


# ---------------------------------------------------------------------------------------------------------
# End of model services.
# ---------------------------------------------------------------------------------------------------------
