"""Which service failures the coordinator retries, how long a run may keep retrying, how it waits, and an
evaluation split to fit the evaluator (issue 12, items 3 and 5). Over fake stubs, in milliseconds."""

from __future__ import annotations

from typing import Any

import grpc
import pytest

from seal.v1 import evaluator_pb2, generator_pb2
from seal_lab.rpc.wire import BUSY_CAUSE, CAUSE_KEY
from seal_lab.store.local import LocalStore
from services.coordinator.engine import calls
from services.coordinator.engine.manager import RunManager
from services.coordinator.run.schemas import RunConfig, RunCreate
from tests.unit.fake_services import FakeClients, FakeService
from tests.unit.test_orchestrator import REQUEST, retry_events, run_to_end, scenario, settings

#: One passage: its calls come one after another, so they can be counted.
ONE_PASSAGE = RunCreate(dataset="demo", limit=1, config=RunConfig(k=2, retention=False))


def fail_with(
    service: FakeService, rpc: str, code: grpc.StatusCode, times: int = 1, busy: bool = False
) -> None:
    trailing = grpc.aio.Metadata((CAUSE_KEY, BUSY_CAUSE)) if busy else grpc.aio.Metadata()
    error = grpc.aio.AioRpcError(code, grpc.aio.Metadata(), trailing, details=f"injected {code.name}")
    service._faults.setdefault(rpc, []).extend([error] * times)


@pytest.mark.parametrize(
    "code",
    [
        grpc.StatusCode.RESOURCE_EXHAUSTED,  # e.g. "Sent message larger than max": the same every time
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.INTERNAL,
    ],
)
def test_a_refusal_fails_its_job_at_once_without_a_retry(tmp_path, code):
    clients = FakeClients(["trainer-a:1"])
    fail_with(clients.evaluator, "Evaluate", code)

    async def body(manager: RunManager, clients: FakeClients, store: LocalStore) -> None:
        run = await run_to_end(manager, await manager.create(REQUEST))
        assert run.status == "completed_with_errors" and run.jobs_failed == 1
        assert run.retries == 0 and retry_events(run) == []
        assert any(code.name in record.model_dump().get("error", "") for record in run.jobs.values())

    scenario(tmp_path, clients, settings(), body)


def test_a_busy_service_is_waited_out_without_using_attempts_or_the_retry_budget(tmp_path):
    """A full queue is the service working, not failing: more busy answers than the call has attempts and
    the run has retries, and the run still succeeds."""
    clients = FakeClients(["trainer-a:1"])
    fail_with(clients.evaluator, "Evaluate", grpc.StatusCode.RESOURCE_EXHAUSTED, times=5, busy=True)
    config = settings(max_attempts=3, max_retries_per_run=1)

    async def body(manager: RunManager, clients: FakeClients, store: LocalStore) -> None:
        run = await run_to_end(manager, await manager.create(ONE_PASSAGE))
        assert run.status == "succeeded", run.error
        assert run.retries == 5 and {e["code"] for e in retry_events(run)} == {"RESOURCE_EXHAUSTED"}

    scenario(tmp_path, clients, config, body)


def test_a_flapping_service_stops_the_run_when_its_retry_budget_is_spent(tmp_path):
    """Each call would be tried 100 times; the run as a whole may retry 5 times."""
    clients = FakeClients(["trainer-a:1"])
    fail_with(clients.evaluator, "Evaluate", grpc.StatusCode.UNAVAILABLE, times=50)
    config = settings(max_attempts=100, max_retries_per_run=5)

    async def body(manager: RunManager, clients: FakeClients, store: LocalStore) -> None:
        run = await run_to_end(manager, await manager.create(ONE_PASSAGE))
        assert run.status == "failed"
        assert "retry budget (5 retries, SEAL_COORDINATOR_MAX_RETRIES_PER_RUN)" in run.error
        assert run.retries == 5 and clients.evaluator.calls["Evaluate"] == 6

    scenario(tmp_path, clients, config, body)


class RecordedJitter:
    """Stands in for `random` in calls.py: records each backoff's range and waits none of it."""

    def __init__(self) -> None:
        self.ranges: list[tuple[float, float]] = []

    def uniform(self, low: float, high: float) -> float:
        self.ranges.append((low, high))
        return 0.0


def test_each_retry_waits_a_random_share_of_the_capped_backoff(tmp_path, monkeypatch):
    jitter = RecordedJitter()
    monkeypatch.setattr(calls, "random", jitter)
    clients = FakeClients(["trainer-a:1"])
    fail_with(clients.evaluator, "Evaluate", grpc.StatusCode.UNAVAILABLE, times=4)
    config = settings(max_attempts=10, initial_backoff_seconds=1.0, max_backoff_seconds=3.0)

    async def body(manager: RunManager, clients: FakeClients, store: LocalStore) -> None:
        run = await run_to_end(manager, await manager.create(ONE_PASSAGE))
        assert run.status == "succeeded"

    scenario(tmp_path, clients, config, body)
    assert jitter.ranges == [(0, 1.0), (0, 2.0), (0, 3.0), (0, 3.0)]  # full jitter: [0, min(cap, base*2^n)]


def test_more_adapters_than_one_evaluate_call_takes_are_evaluated_in_parts(tmp_path):
    request = RunCreate(dataset="demo", limit=1, config=RunConfig(k=3, retention=True, retention_questions=4))
    config = settings(evaluate_max_adapters_per_call=2)

    async def body(manager: RunManager, clients: FakeClients, store: LocalStore) -> None:
        run = await run_to_end(manager, await manager.create(request))
        assert run.status == "succeeded", run.error
        sent = [
            list(r.adapter_keys)
            for r in clients.evaluator.requests
            if isinstance(r, evaluator_pb2.EvaluateRequest)
        ]
        assert all(len([k for k in keys if k]) <= 2 for keys in sent)
        jobs = {name: record.model_dump() for name, record in run.jobs.items()}
        adapters = [jobs[f"0000-train-implications-{i}"]["adapter_key"] for i in range(3)]
        evaluated = jobs["0000-evaluate"]["evaluations"]
        retention = jobs["0000-retention"]["evaluations"]
        assert list(evaluated) == adapters and list(retention) == ["", *adapters]
        # baseline, then 3 adapters in parts of 2, twice (the passage's questions and the retention set)
        assert len(sent) == 1 + 2 + 2

    scenario(tmp_path, FakeClients(["trainer-a:1"]), config, body)


def test_a_policy_adapter_in_the_store_is_accepted_at_creation(tmp_path):
    def with_policy(key: str) -> RunCreate:
        return RunCreate(
            dataset="demo", limit=1, config=RunConfig(k=1, retention=False, policy_adapter_key=key)
        )

    async def body(manager: RunManager, clients: FakeClients, store: LocalStore) -> Any:
        store.put_bytes("adapters/policy/adapter_config.json", b"{}")
        run = await run_to_end(manager, await manager.create(with_policy("adapters/policy")))
        (generate,) = [r for r in clients.generator.requests if isinstance(r, generator_pb2.GenerateRequest)]
        assert generate.policy_adapter_key == "adapters/policy"
        assert run.status == "succeeded"

    scenario(tmp_path, FakeClients(["trainer-a:1"]), settings(), body)


def test_an_internal_error_of_the_coordinator_does_not_show_its_text(tmp_path):
    clients = FakeClients(["trainer-a:1"])
    secret = "/srv/seal/private/coordinator-store/runs/x.json"
    clients.evaluator._faults["Evaluate"] = [PermissionError(13, "Permission denied", secret)]  # type: ignore[list-item]

    async def body(manager: RunManager, clients: FakeClients, store: LocalStore) -> None:
        run = await run_to_end(manager, await manager.create(ONE_PASSAGE))
        assert run.status == "failed" and "internal error: PermissionError" in run.error
        assert "/srv" not in run.error and all("/srv" not in e.message for e in run.events)

    scenario(tmp_path, clients, settings(), body)
