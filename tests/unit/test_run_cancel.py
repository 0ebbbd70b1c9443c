"""Cancelling a run, over fake service stubs and a local store: it stops at once, its calls in flight are
cancelled, its queued jobs never start, and it stays stopped after a restart; over the HTTP API, the route's
status codes (the real run manager behind an in-process ASGI client)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
import httpx
import pytest

from seal_lab.errors import FailedPrecondition
from seal_lab.store.local import LocalStore
from services.coordinator.api.app import create_app
from services.coordinator.api.deps import get_manager
from services.coordinator.engine.manager import RunManager
from services.coordinator.engine.records import run_key
from services.coordinator.engine.state import CANCEL, RunState
from services.coordinator.run.schemas import RunConfig
from services.coordinator.settings import CoordinatorSettings
from tests.unit.fake_services import FakeClients
from tests.unit.test_orchestrator import REQUEST, run_to_end, scenario, settings, until

Body = Callable[[RunManager, FakeClients, LocalStore, httpx.AsyncClient], Awaitable[Any]]


def with_api(tmp_path: Any, clients: FakeClients, config: CoordinatorSettings, body: Body) -> Any:
    """`scenario`, with the coordinator's HTTP API over the same run manager."""

    async def inner(manager: RunManager, clients: FakeClients, store: LocalStore) -> Any:
        app = create_app(config, store)
        app.dependency_overrides[get_manager] = lambda: manager
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            return await body(manager, clients, store, http)

    return scenario(tmp_path, clients, config, inner)


def test_a_cancelled_run_stops_its_calls_in_flight_and_starts_no_queued_job(tmp_path):
    config = settings(max_concurrent_passages=1)
    clients = FakeClients(config.trainer_addresses)
    trainer = clients.trainer["trainer-a:1"]
    trainer.hold("Train")

    async def body(manager: RunManager, clients: FakeClients, store: LocalStore) -> None:
        run = await manager.create(REQUEST)
        await until(trainer.holding.is_set)  # passage 0's first training is in flight
        cancelled = await manager.cancel(run.id)
        assert cancelled is run and run.status == "cancelled" and run.id not in manager._tasks
        assert trainer.cancelled["Train"] == 1  # the service saw its call cancelled
        await asyncio.sleep(0.05)
        # Nothing after it started: passage 0's second training and passage 1 stayed queued.
        assert trainer.calls["Train"] == 1 and clients.generator.calls["Generate"] == 1
        assert clients.evaluator.calls["Evaluate"] == 1  # passage 0's baseline
        assert sorted(run.jobs) == ["0000-baseline", "0000-generate-implications"]
        assert store.get_json(run_key(run.id, CANCEL))["status_before"] == "running"
        assert run.lease is None and await asyncio.to_thread(manager.leases.holder, run.id) == ""
        # "cancelling" while its task stopped (its calls cancelled), "cancelled" once it had: one event each
        flags = [flag for e in run.events for flag in ("cancelling", "cancelled") if e.data.get(flag)]
        assert flags == ["cancelling", "cancelled"]
        assert await manager.cancel(run.id) is run  # idempotent
        with pytest.raises(FailedPrecondition, match="was cancelled"):
            await manager.resume(run.id)

    scenario(tmp_path, clients, config, body)


def test_a_cancelled_run_stays_cancelled_after_a_coordinator_restart(tmp_path):
    config = settings(max_concurrent_passages=1)
    first, second = FakeClients(config.trainer_addresses), FakeClients(config.trainer_addresses)
    first.trainer["trainer-a:1"].hold("Train")

    async def main() -> None:
        store = LocalStore(tmp_path / "store")
        manager = RunManager(store, first, config)
        await manager.start()
        run = await manager.create(REQUEST)
        await until(first.trainer["trainer-a:1"].holding.is_set)
        await manager.cancel(run.id)
        await manager.shutdown()

        restarted = RunManager(store, second, config)
        await restarted.start()
        try:
            await until(lambda: restarted.ready)
            loaded = await restarted.find(run.id)
            await asyncio.sleep(0.05)
            assert loaded.status == "cancelled" and run.id not in restarted._tasks
            assert sum(sum(s.calls.values()) for s in (second.generator, second.evaluator)) == 0
            assert sum(second.trainer["trainer-a:1"].calls.values()) == 0
            with pytest.raises(FailedPrecondition, match="was cancelled"):
                await restarted.resume(run.id)
        finally:
            await restarted.shutdown()

    asyncio.run(main())


def test_a_cancellation_recorded_by_another_coordinator_stops_the_run_here(tmp_path):
    config = settings(max_concurrent_passages=1, lease_ttl_seconds=0.3)
    clients = FakeClients(config.trainer_addresses)
    trainer = clients.trainer["trainer-a:1"]
    trainer.hold("Train")

    async def body(manager: RunManager, clients: FakeClients, store: LocalStore) -> None:
        run = await manager.create(REQUEST)
        await until(trainer.holding.is_set)
        store.put_json(run_key(run.id, CANCEL), {"id": run.id, "by": "another coordinator"})
        await until(lambda: run.status == "cancelled", timeout=5)  # at its next lease renewal
        await until(lambda: trainer.cancelled["Train"] == 1 and run.lease is None, timeout=5)
        assert run.id not in manager._tasks and trainer.calls["Train"] == 1

    scenario(tmp_path, clients, config, body)


def test_a_failed_run_can_be_cancelled_and_is_then_never_resumed(tmp_path):
    config = settings()
    clients = FakeClients(config.trainer_addresses)
    clients.trainer["trainer-a:1"].fail("Train", grpc.StatusCode.UNAVAILABLE, times=100)

    async def body(manager: RunManager, clients: FakeClients, store: LocalStore) -> None:
        run = await run_to_end(manager, await manager.create(REQUEST))
        assert run.status == "failed"
        assert (await manager.cancel(run.id)).status == "cancelled"
        with pytest.raises(FailedPrecondition, match="was cancelled"):
            await manager.resume(run.id)

    scenario(tmp_path, clients, config, body)


def test_the_cancel_route_answers_the_summary_is_idempotent_and_refuses_finished_runs(tmp_path):
    config = settings(max_concurrent_passages=1)
    clients = FakeClients(config.trainer_addresses)
    trainer = clients.trainer["trainer-a:1"]

    async def body(manager: RunManager, clients: FakeClients, store: LocalStore, http: httpx.AsyncClient):
        finished = await run_to_end(manager, await manager.create(REQUEST))
        assert finished.status == "succeeded"
        refused = await http.post(f"/v1/runs/{finished.id}/cancel")
        assert refused.status_code == 409 and "has finished (succeeded)" in refused.json()["detail"]

        trainer.hold("Train")
        created = await http.post("/v1/runs", json={"dataset": "demo", "limit": 2, "config": {"k": 2}})
        assert created.status_code == 202
        run_id = created.json()["id"]
        await until(trainer.holding.is_set)
        for _ in range(2):  # the second time: the same answer, nothing more happens
            answer = await http.post(f"/v1/runs/{run_id}/cancel")
            assert answer.status_code == 200
            assert answer.json()["status"] == "cancelled" and answer.json()["id"] == run_id
        assert (await http.get(f"/v1/runs/{run_id}")).json()["status"] == "cancelled"
        resumed = await http.post(f"/v1/runs/{run_id}/resume")
        assert resumed.status_code == 409 and "was cancelled" in resumed.json()["detail"]
        unknown = await http.post("/v1/runs/run-nope/cancel")
        assert unknown.status_code == 404
        # The event stream of a cancelled run ends with its summary.
        events = await http.get(f"/v1/runs/{run_id}/events")
        assert events.text.rstrip().splitlines()[-1].startswith("data: ") and '"cancelled"' in events.text

    with_api(tmp_path, clients, config, body)


def test_a_store_outage_while_a_run_is_cancelling_shows_in_its_line_but_leaves_it_cancelling():
    run = RunState("run-1", "", RunConfig(), [], 0.0, status="cancelling")
    run.pause("paused: store unavailable during recording job x; retry in 1s")
    assert run.status == "cancelling" and run.current.startswith("paused: store unavailable")
    run.unpause()
    assert run.status == "cancelling"
    running = RunState("run-2", "", RunConfig(), [], 0.0, status="running")
    running.pause("paused: the store")
    assert running.status == "paused"
    running.unpause()
    assert running.status == "running"
