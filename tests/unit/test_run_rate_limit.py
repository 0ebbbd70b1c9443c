"""How fast one client may start runs (issue 34, item 5): past the burst, creating or resuming a run is a 429
`rate_limited` with `Retry-After`, per client (the token when there is one, else the address), and the bucket
refills with the (injected) clock. The run manager is a stub: no run is created."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import SecretStr

from seal_lab.errors import NotFound
from seal_lab.security import Security
from seal_lab.store.local import LocalStore
from services.coordinator.api.app import create_app
from services.coordinator.api.deps import get_manager
from services.coordinator.api.ratelimit import MAX_IDLE_BUCKETS, RateLimited, RateLimiter
from services.coordinator.settings import CoordinatorSettings
from tests.tls_fixtures import TOKEN

BURST, RATE = 3, 0.5  # 3 at once, then one every 2 s
BODY = {"dataset": "demo"}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Accepting:
    """Creates every run (nothing runs); knows no run to resume."""

    runs: dict = {}  # noqa: RUF012 - read only
    ready = True

    def __init__(self) -> None:
        self.created = 0

    async def create(self, body: object) -> SimpleNamespace:
        self.created += 1
        return SimpleNamespace(id=f"run-{self.created}", status="queued", passages=[], jobs_total=1)

    async def resume(self, run_id: str) -> None:
        raise NotFound(f"no run {run_id!r}")

    def summaries(self, before: object = None) -> list:
        return []


@pytest.fixture
def clock() -> Clock:
    return Clock()


def make_app(tmp_path: Path, clock: Clock, token: str | None = None) -> FastAPI:
    settings = CoordinatorSettings(
        allowed_hosts=["testserver"], run_start_burst=BURST, run_start_rate_per_second=RATE
    )
    security = Security(token=SecretStr(token) if token else None)
    app = create_app(settings, LocalStore(tmp_path / "store"), security, clock=clock)
    manager = Accepting()
    app.dependency_overrides[get_manager] = lambda: manager
    return app


def client_of(app: FastAPI, token: str | None = None, address: str = "10.0.0.1") -> TestClient:
    """No `with`: the lifespan (real service clients) is not started; the stub stands in for the manager."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return TestClient(app, headers=headers, client=(address, 5000))


def assert_limited(response, retry_after: int) -> None:
    assert response.status_code == 429, response.text
    body = response.json()
    assert body["code"] == "rate_limited"
    assert body["message"] == body["detail"] and "SEAL_COORDINATOR_RUN_START_BURST" in body["message"]
    assert response.headers["Retry-After"] == str(retry_after)


def test_past_the_burst_a_run_start_is_a_429_with_retry_after(tmp_path, clock):
    client = client_of(make_app(tmp_path, clock))
    for _ in range(BURST):
        assert client.post("/v1/runs", json=BODY).status_code == 202
    assert_limited(client.post("/v1/runs", json=BODY), retry_after=2)
    clock.now += 0.5  # a quarter of a token back: 1.5 s to go, rounded up
    assert_limited(client.post("/v1/runs", json=BODY), retry_after=2)
    assert_limited(client.post("/v1/runs/run-1/resume"), retry_after=2)  # a resume starts work too
    # Reading is not limited.
    assert client.get("/v1/runs").status_code == 200


def test_the_bucket_refills_with_time_up_to_the_burst(tmp_path, clock):
    client = client_of(make_app(tmp_path, clock))
    for _ in range(BURST):
        assert client.post("/v1/runs", json=BODY).status_code == 202
    assert client.post("/v1/runs", json=BODY).status_code == 429
    clock.now += 2.0  # one token
    assert client.post("/v1/runs", json=BODY).status_code == 202
    assert client.post("/v1/runs", json=BODY).status_code == 429
    clock.now += 3600  # full again, and no fuller than the burst
    for _ in range(BURST):
        assert client.post("/v1/runs", json=BODY).status_code == 202
    assert client.post("/v1/runs", json=BODY).status_code == 429


def test_resume_and_create_share_the_bucket(tmp_path, clock):
    client = client_of(make_app(tmp_path, clock))
    for _ in range(BURST):
        assert client.post("/v1/runs/run-x/resume").status_code == 404  # past the limit: the manager's answer
    assert_limited(client.post("/v1/runs", json=BODY), retry_after=2)


def test_without_a_token_each_address_is_a_client(tmp_path, clock):
    app = make_app(tmp_path, clock)
    first, second = client_of(app, address="10.0.0.1"), client_of(app, address="10.0.0.2")
    for _ in range(BURST):
        assert first.post("/v1/runs", json=BODY).status_code == 202
    assert first.post("/v1/runs", json=BODY).status_code == 429
    for _ in range(BURST):
        assert second.post("/v1/runs", json=BODY).status_code == 202
    assert second.post("/v1/runs", json=BODY).status_code == 429


def test_with_a_token_every_holder_is_one_client(tmp_path, clock):
    app = make_app(tmp_path, clock, token=TOKEN)
    first, second = client_of(app, TOKEN, "10.0.0.1"), client_of(app, TOKEN, "10.0.0.2")
    for _ in range(BURST):
        assert first.post("/v1/runs", json=BODY).status_code == 202
    assert_limited(second.post("/v1/runs", json=BODY), retry_after=2)
    # A request without the token is refused before it spends anyone's start.
    assert client_of(app, address="10.0.0.3").post("/v1/runs", json=BODY).status_code == 401


def test_the_defaults_leave_a_person_and_the_benchmarks_alone():
    settings = CoordinatorSettings()
    assert settings.run_start_burst >= 20 and settings.run_start_rate_per_second >= 1.0


def test_idle_clients_buckets_are_forgotten(clock):
    limiter = RateLimiter(burst=2, rate=1.0, clock=clock)
    for n in range(MAX_IDLE_BUCKETS + 1):
        limiter.take(f"address:{n}")
    limiter.take("busy")
    limiter.take("busy")
    clock.now += 5  # every bucket full again, but "busy" is empty only after its next take
    limiter.take("another")
    assert len(limiter._buckets) <= 2
    limiter.take("busy")
    limiter.take("busy")
    with pytest.raises(RateLimited) as refused:
        limiter.take("busy")
    assert refused.value.retry_after == 1
