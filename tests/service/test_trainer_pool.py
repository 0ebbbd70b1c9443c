"""Several trainers: jobs are spread over all of them, and a trainer that disappears mid-run is routed around.

Routing is mechanics, so the services run on a tiny random Llama (tests/fault_harness.py): each run takes
seconds, and a gate holds the spare trainer inside a training job while the test stops it."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from seal.v1 import common_pb2, trainer_pb2_grpc
from seal_lab.serve.host import ModelHost
from seal_lab.settings import ModelSettings
from seal_lab.store.local import LocalStore
from services.coordinator.api.app import create_app
from services.coordinator.settings import CoordinatorSettings
from tests.fault_harness import CountingTrainer, Gate, Services
from tests.grpc_harness import ServerThread, serve
from tests.tiny_model import tiny_llama

PASSAGES = [
    {
        "title": f"Bell {name}",
        "context": f"The {name} bell was cast in {year} by {founder} and rings every {day}.",
        "questions": [{"question": f"Who cast the {name} bell?", "answer": founder}],
    }
    for name, year, founder, day in [
        ("Ostrany", 1712, "Pell Arrowby", "Sunday"),
        ("Virm", 1803, "Ada Quell", "Monday"),
    ]
]
CONFIG = {"k": 3, "max_new_tokens": 24, "eval_max_new_tokens": 8, "seed": 5, "retention": False}


@pytest.fixture(scope="module")
def tiny_model_path(tmp_path_factory: pytest.TempPathFactory) -> str:
    return tiny_llama(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture
def services(tmp_path, tiny_model_path: str) -> Iterator[Services]:
    """Generator, trainer and evaluator on the tiny model, on a fresh store."""
    started = Services(LocalStore(tmp_path / "store"), tiny_model_path)
    yield started
    started.stop()


@pytest.fixture
def spare(services: Services, tiny_model_path: str) -> Iterator[tuple[CountingTrainer, ServerThread]]:
    """A second trainer on the same store with the first one's limits (its servicer, with a gate, and its
    server)."""
    model = ModelSettings(name=tiny_model_path, device="cpu", dtype="float32")
    servicer = CountingTrainer(services.store, ModelHost("trainer", model), services.trainer.settings)
    server = serve(servicer, "seal.v1.Trainer", trainer_pb2_grpc.add_TrainerServicer_to_server)
    yield servicer, server
    server.stop()


def _client(generator_server, trainers, evaluator_server, store) -> TestClient:
    settings = CoordinatorSettings(
        generator_address=generator_server.address,
        trainer_addresses=[t.address for t in trainers],
        evaluator_address=evaluator_server.address,
        initial_backoff_seconds=0.1,
        max_backoff_seconds=0.5,
    )
    return TestClient(create_app(settings, store))


def _wait(client: TestClient, run_id: str, condition, timeout: float = 600) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        detail = client.get(f"/v1/runs/{run_id}", params={"events": 2000}).json()
        if condition(detail):
            return detail
        time.sleep(0.2)
    raise AssertionError(f"timed out: {detail['status']} {detail['current']}")


def _finished(detail: dict) -> bool:
    return detail["status"] in ("succeeded", "completed_with_errors", "failed")


def _info(server: ServerThread) -> common_pb2.ServiceInfo:
    with server.channel() as channel:
        return trainer_pb2_grpc.TrainerStub(channel).GetInfo(common_pb2.GetInfoRequest(), timeout=30)


def test_jobs_are_spread_over_every_trainer(services, spare):
    generator_server, trainer_server, evaluator_server = services.servers
    _, spare_trainer = spare
    store = services.store
    trainers = [trainer_server, spare_trainer]
    with _client(generator_server, trainers, evaluator_server, store) as client:
        run_id = client.post("/v1/runs", json={"passages": PASSAGES[:1], "config": CONFIG}).json()["id"]
        detail = _wait(client, run_id, _finished)
        pool = client.app.state.manager.clients.trainers
        capacities = {endpoint.address: endpoint.capacity for endpoint in pool.endpoints}
    assert detail["status"] == "succeeded", detail["error"]
    jobs = [store.get_json(k) for k in store.list_keys(f"runs/{run_id}/jobs/") if "-train-" in k]
    assert {job["trainer"] for job in jobs} == {trainer_server.address, spare_trainer.address}
    # Each trainer is given as many jobs at once as it trains together (its GetInfo; 0 means 1).
    group_sizes = {t.address: max(1, _info(t).max_group_size) for t in trainers}
    assert capacities == group_sizes
    assert [t["max_group_size"] for t in detail["services"]["trainers"]] == [
        group_sizes[t.address] for t in trainers
    ]


def test_a_trainer_that_disappears_mid_run_is_routed_around(services, spare):
    generator_server, trainer_server, evaluator_server = services.servers
    spare_servicer, spare_trainer = spare
    spare_servicer.gate = gate = Gate()  # holds the spare's first training job until opened
    store = services.store
    with _client(generator_server, [spare_trainer, trainer_server], evaluator_server, store) as client:
        run_id = client.post("/v1/runs", json={"passages": PASSAGES, "config": CONFIG}).json()["id"]
        assert gate.reached.wait(120), "the spare trainer never got a job"
        spare_trainer.stop()  # it disappears in the middle of a training job
        gate.open()
        detail = _wait(client, run_id, _finished)
    assert detail["status"] == "succeeded", detail["error"]
    assert detail["jobs_done"] == detail["jobs_total"]
    jobs = [store.get_json(k) for k in store.list_keys(f"runs/{run_id}/jobs/") if "-train-" in k]
    assert len(jobs) == 2 * CONFIG["k"]
    # Jobs after the stop went to the trainer that stayed (the one it held among them).
    assert sum(job["trainer"] == trainer_server.address for job in jobs) >= CONFIG["k"]
