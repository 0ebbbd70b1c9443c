"""`GET /v1/services`: behind the token like /v1; every service the coordinator sees, each asked GetInfo at
once with a short deadline. One that is down or stuck is `reachable: false` with a one-line reason, and the
others are still listed (over the fake services, and over real gRPC channels to ports nobody listens on)."""

from __future__ import annotations

import asyncio
import socket
import time
from typing import Any

import grpc
from fastapi.testclient import TestClient
from pydantic import SecretStr

from seal_lab.security import Security
from seal_lab.store.local import LocalStore
from services.coordinator.api.app import create_app
from services.coordinator.engine.clients import ServiceClients, TrainerEndpoint, TrainerPool
from services.coordinator.engine.manager import RunManager
from services.coordinator.engine.servicecheck import QUICK_INFO_SECONDS
from services.coordinator.engine.survey import reason, survey
from tests.tls_fixtures import TOKEN
from tests.unit.fake_services import FINGERPRINT, FakeClients, FakeTrainer, rpc_error
from tests.unit.test_orchestrator import settings

AUTH = {"Authorization": f"Bearer {TOKEN}"}
TRAINERS = ["trainer-a:1", "trainer-b:2"]


def _client(tmp_path: Any, clients: FakeClients, **overrides: Any) -> TestClient:
    config = settings(TRAINERS, **overrides)
    app = create_app(config, LocalStore(tmp_path), Security(token=SecretStr(TOKEN)))
    app.state.manager = RunManager(LocalStore(tmp_path), clients, config)  # no lifespan: no run starts
    return TestClient(app)


def test_services_need_the_token_and_list_every_service_with_its_model(tmp_path):
    clients = FakeClients(TRAINERS)
    clients.trainer["trainer-b:2"].dtype = "bfloat16"
    client = _client(tmp_path, clients, generator_concurrency=3)
    assert client.get("/v1/services").status_code == 401
    response = client.get("/v1/services", headers=AUTH)
    assert response.status_code == 200, response.text
    body = response.json()
    generator, evaluator, trainers = body["generator"], body["evaluator"], body["trainers"]
    assert generator["address"] == "127.0.0.1:50051" and generator["reachable"] is True
    assert generator["model_name"] == "fake" and generator["model_fingerprint"] == FINGERPRINT
    assert generator["capacity"] == 3 and generator["pending"] == 0 and generator["backend"] == "local"
    assert evaluator["reachable"] is True and evaluator["error"] is None and evaluator["dtype"] == "float32"
    assert [(t["address"], t["dtype"]) for t in trainers] == [
        ("trainer-a:1", "float32"),
        ("trainer-b:2", "bfloat16"),
    ]
    assert all(t["max_group_size"] == 1 and t["capacity"] == 1 and t["in_flight"] == 0 for t in trainers)
    assert body["trainers_missing"] is None and body["pending_training_jobs"] == 0
    assert body["info_timeout_seconds"] == QUICK_INFO_SECONDS  # the default 10 s, capped
    assert all(clients.trainer[a].calls["GetInfo"] == 1 for a in TRAINERS)  # asked now, once each


def test_a_service_that_is_down_is_unreachable_with_its_reason_and_the_others_still_show(tmp_path):
    clients = FakeClients(TRAINERS)
    details = "failed to connect to all addresses\n  last error: Connection refused"
    clients.trainer["trainer-b:2"].fail("GetInfo", grpc.StatusCode.UNAVAILABLE, details=details)
    clients.evaluator.fail("GetInfo", grpc.StatusCode.UNAVAILABLE, details="evaluator restarting")
    response = _client(tmp_path, clients).get("/v1/services", headers=AUTH)
    assert response.status_code == 200, response.text
    body = response.json()
    down = body["trainers"][1]
    assert down["address"] == "trainer-b:2" and down["reachable"] is False
    assert down["error"] == "UNAVAILABLE: failed to connect to all addresses last error: Connection refused"
    assert down["model_name"] == "" and down["capacity"] == 1  # the pool's slots are known without GetInfo
    assert body["evaluator"] == {
        **body["evaluator"],
        "reachable": False,
        "error": "UNAVAILABLE: evaluator restarting",
    }
    assert body["trainers"][0]["reachable"] is True and body["generator"]["reachable"] is True


def test_a_stuck_service_does_not_hold_the_answer(tmp_path):
    clients = FakeClients(TRAINERS)
    clients.generator.hold("GetInfo")  # never answers (the fake ignores its deadline: the backstop ends it)
    client = _client(tmp_path, clients, info_timeout_seconds=0.2)
    started = time.monotonic()
    response = client.get("/v1/services", headers=AUTH)
    elapsed = time.monotonic() - started
    assert response.status_code == 200 and elapsed < 3.0, elapsed
    body = response.json()
    assert (
        body["generator"]["reachable"] is False
        and body["generator"]["error"] == "no answer before the deadline"
    )
    assert body["info_timeout_seconds"] == 0.2
    assert [t["reachable"] for t in body["trainers"]] == [True, True]


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_real_channels_to_services_that_are_not_there_say_so_without_a_stack_trace():
    addresses = [f"127.0.0.1:{_closed_port()}" for _ in range(3)]
    config = settings(
        [addresses[2]],
        generator_address=addresses[0],
        evaluator_address=addresses[1],
        info_timeout_seconds=2.0,
    )

    async def main() -> Any:
        clients = ServiceClients(config)
        try:
            return await survey(clients, config, {"trainer": 2})
        finally:
            await clients.close()

    started = time.monotonic()
    status = asyncio.run(main())
    assert time.monotonic() - started < 4.0
    every = [status.generator, status.evaluator, *status.trainers]
    assert [s.address for s in every] == addresses and not any(s.reachable for s in every)
    for service in every:
        assert service.error and service.error.split(":")[0] in ("UNAVAILABLE", "DEADLINE_EXCEEDED")
        assert "\n" not in service.error and "Traceback" not in service.error
    assert status.pending_training_jobs == 2


def test_reason_is_one_line_and_bounded():
    assert reason(rpc_error(grpc.StatusCode.INTERNAL, "a\nb")) == "INTERNAL: a b"
    assert (
        reason(ValueError("x" * 1000)).startswith("ValueError: xxx")
        and len(reason(ValueError("x" * 1000))) == 300
    )
    assert reason(TimeoutError()) == "no answer before the deadline"


def test_trainers_found_by_dns_show_cooling_down_draining_and_missing():
    """A trainer whose call failed lately is cooling down; one gone from DNS with a job running is draining
    (still listed, with its job); a name with no address says so."""
    answer = ["10.0.0.1:1", "10.0.0.2:1"]

    async def resolve(host: str, port: int) -> list[str]:
        return list(answer)

    clients = FakeClients(["listed:1"])  # its pool replaced by one that finds the trainers by DNS
    fakes = {address: FakeTrainer() for address in answer}
    clients.trainers = TrainerPool(
        ["dns:///trainers.test:1"],
        connect=lambda address, name="": TrainerEndpoint(address, None, fakes[address]),
        resolver=resolve,
    )
    config = settings(["dns:///trainers.test:1"])

    async def main() -> tuple[Any, Any]:
        pool = clients.trainers
        await pool.refresh()
        first, second = pool.endpoints
        pool.failed(second)
        async with pool.acquire() as busy:
            assert busy is first
            answer.remove(first.address)  # the first goes away from DNS while its job runs
            await pool.refresh()
            seen = await survey(clients, config, {"trainer": 1})
        answer.clear()
        await pool.refresh()
        try:
            return seen, await survey(clients, config, {})
        finally:
            await pool.close()  # its discovery task, started by acquire

    seen, empty = asyncio.run(main())
    by_address = {t.address: t for t in seen.trainers}
    assert by_address["10.0.0.1:1"].draining and by_address["10.0.0.1:1"].in_flight == 1
    assert by_address["10.0.0.1:1"].load == 1.0 and by_address["10.0.0.1:1"].reachable
    assert by_address["10.0.0.2:1"].cooling_down and not by_address["10.0.0.2:1"].draining
    assert seen.trainers_missing is None and seen.pending_training_jobs == 1
    assert empty.trainers == [] and empty.trainers_missing == "none found at dns:///trainers.test:1"
