"""The coordinator's `GET /metrics`: behind the token like /v1, Prometheus text, and its gauges follow the
runs: `seal_pending_training_jobs` rises while Train calls wait on a trainer and falls back when they end;
failed attempts and retries are counted by service and code."""

from __future__ import annotations

import asyncio
import re

import grpc
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry, generate_latest
from pydantic import SecretStr

from seal_lab.security import Security
from seal_lab.store.local import LocalStore
from services.coordinator.api.app import create_app
from services.coordinator.api.routes.metrics import RunsCollector
from services.coordinator.engine.manager import RunManager
from services.coordinator.settings import CoordinatorSettings
from tests.tls_fixtures import TOKEN
from tests.unit.fake_services import FakeClients
from tests.unit.test_orchestrator import REQUEST, run_to_end, settings, until


def _value(text: str, sample: str) -> float:
    match = re.search(rf"^{re.escape(sample)} (\S+)$", text, re.MULTILINE)
    assert match, f"{sample} not in the metrics"
    return float(match[1])


def test_metrics_need_the_token_and_answer_prometheus_text(tmp_path):
    app = create_app(CoordinatorSettings(), LocalStore(tmp_path), Security(token=SecretStr(TOKEN)))
    manager = RunManager(LocalStore(tmp_path), FakeClients(["trainer-a:1"]), CoordinatorSettings())
    app.state.manager = manager  # no lifespan: no run starts
    client = TestClient(app)
    refused = client.get("/metrics")
    assert refused.status_code == 401 and "SEAL_AUTH_TOKEN" in refused.json()["detail"]
    assert client.get("/metrics", headers={"Authorization": "Bearer nope-nope-nope-nope"}).status_code == 401
    response = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    assert _value(response.text, "seal_pending_training_jobs") == 0
    assert _value(response.text, "seal_trainer_slots") == 1
    assert _value(response.text, 'seal_runs{status="running"}') == 0
    assert "process_resident_memory_bytes" in response.text
    # A second app has a registry of its own (no "Duplicated timeseries" from prometheus_client).
    other = create_app(CoordinatorSettings(), LocalStore(tmp_path))
    other.state.manager = manager
    assert TestClient(other).get("/metrics").status_code == 200


def test_pending_training_jobs_follow_the_train_calls_and_retries_are_counted(tmp_path):
    clients = FakeClients(["trainer-a:1"])
    trainer = clients.trainer["trainer-a:1"]
    trainer.fail("Train", grpc.StatusCode.UNAVAILABLE)  # the first Train call fails once, then is retried
    trainer.hold("Train")

    async def main() -> None:
        manager = RunManager(LocalStore(tmp_path / "store"), clients, settings())
        registry = CollectorRegistry()
        registry.register(RunsCollector(lambda: manager))

        def scrape() -> str:
            return generate_latest(registry).decode()

        await manager.start()
        try:
            run = await manager.create(REQUEST)
            await until(trainer.holding.is_set)
            held = scrape()
            assert _value(held, "seal_pending_training_jobs") >= 1
            assert _value(held, 'seal_pending_service_calls{service="trainer"}') >= 1
            assert _value(held, 'seal_jobs_in_progress{kind="train"}') == _value(
                held, "seal_pending_training_jobs"
            )
            assert _value(held, 'seal_runs{status="running"}') == 1
            assert _value(held, f'seal_run_seconds{{run_id="{run.id}"}}') >= 0
            assert _value(held, 'seal_jobs_done{kind="baseline"}') >= 1
            assert _value(held, "seal_jobs_remaining") > 0
            trainer.release("Train")
            run = await run_to_end(manager, run)
            assert run.status == "succeeded"
        finally:
            await manager.shutdown()
        done = scrape()
        assert _value(done, "seal_pending_training_jobs") == 0
        assert _value(done, 'seal_jobs_in_progress{kind="train"}') == 0
        assert _value(done, 'seal_runs{status="succeeded"}') == 1
        assert _value(done, "seal_finished_run_seconds_count") == 1
        assert _value(done, 'seal_service_call_errors_total{code="UNAVAILABLE",service="trainer"}') == 1
        assert _value(done, 'seal_service_call_retries_total{code="UNAVAILABLE",service="trainer"}') == 1

    asyncio.run(main())
