"""Several trainers: jobs are spread over all of them, and a trainer that disappears mid-run is routed around."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from seal.v1 import common_pb2, trainer_pb2_grpc
from seal_lab.serve.host import ModelHost
from services.coordinator.api.app import create_app
from services.coordinator.settings import CoordinatorSettings
from services.trainer.server import TrainerServicer
from tests.grpc_harness import ServerThread, serve
from tests.service.conftest import TEST_TRAINER_SETTINGS

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


@pytest.fixture
def spare_trainer(shared_store, model_settings) -> Iterator[ServerThread]:
    servicer = TrainerServicer(shared_store, ModelHost("trainer", model_settings), TEST_TRAINER_SETTINGS)
    server = serve(servicer, "seal.v1.Trainer", trainer_pb2_grpc.add_TrainerServicer_to_server)
    yield server
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


def test_jobs_are_spread_over_every_trainer(
    generator_server, trainer_server, spare_trainer, evaluator_server, tmp_path
):
    from seal_lab.store.local import LocalStore

    store = LocalStore(tmp_path / "store")
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


def test_a_trainer_that_disappears_mid_run_is_routed_around(
    generator_server, trainer_server, spare_trainer, evaluator_server, tmp_path
):
    from seal_lab.store.local import LocalStore

    store = LocalStore(tmp_path / "store")
    with _client(generator_server, [spare_trainer, trainer_server], evaluator_server, store) as client:
        run_id = client.post("/v1/runs", json={"passages": PASSAGES, "config": CONFIG}).json()["id"]
        _wait(client, run_id, lambda d: d["jobs_done"] >= 3)  # baseline, generate, a first adapter
        spare_trainer.stop()
        detail = _wait(client, run_id, _finished)
    assert detail["status"] == "succeeded", detail["error"]
    assert detail["jobs_done"] == detail["jobs_total"]
    jobs = [store.get_json(k) for k in store.list_keys(f"runs/{run_id}/jobs/") if "-train-" in k]
    assert len(jobs) == 2 * CONFIG["k"]
    # Jobs after the stop went to the trainer that stayed.
    assert sum(job["trainer"] == trainer_server.address for job in jobs) >= CONFIG["k"]
