"""Schemathesis over the coordinator's OpenAPI: every operation, with generated valid and invalid inputs, never
answers with a server error, and every response matches the schema for its status.

The app runs in process (schemathesis' ASGI transport) with its run manager over the fake service stubs
(tests/unit/fake_services.py) and a local store under a temporary directory: the runs the fuzzer creates
execute in milliseconds and touch no model. Bounded: a fixed number of examples per operation and a deadline
per example; the module takes about 20 s on two cores.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from pydantic import SecretStr
from schemathesis.checks import not_a_server_error, response_schema_conformance, status_code_conformance
from schemathesis.python.asgi import get_client, shutdown_lifespans

from seal_lab.security import Security
from seal_lab.store.local import LocalStore
from services.coordinator.api.app import create_app
from services.coordinator.engine.manager import RunManager
from services.coordinator.settings import CoordinatorSettings
from tests.unit.fake_services import FakeClients

#: Examples per operation (the explicit and coverage phases add a few each).
MAX_EXAMPLES = 40
#: Per example: one request to an app whose service calls answer at once. Generous, for a loaded CI machine.
DEADLINE_MS = 5000
#: No 5xx at all; a documented status; a body that matches the schema of that status.
CHECKS = [not_a_server_error, status_code_conformance, response_schema_conformance]
FINISHED = ("succeeded", "completed_with_errors", "failed")


def fuzzed_app(store: LocalStore, token: str | None) -> FastAPI:
    """The coordinator's app with its run manager over the fake stubs instead of gRPC clients; `/v1` requires
    `token` as the bearer token when one is given."""
    config = CoordinatorSettings(
        trainer_addresses=["trainer-a:1"],
        initial_backoff_seconds=0.0,
        max_backoff_seconds=0.0,
        max_attempts=2,
        # The fuzzer creates and resumes runs as fast as it can: past a person's rate limit, so that its
        # requests reach the run manager (tests/unit/test_run_rate_limit.py checks the limit).
        run_start_burst=100_000,
    )
    app = create_app(config, store, Security(SecretStr(token) if token else None))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        manager = RunManager(store, FakeClients(config.trainer_addresses), config)  # type: ignore[arg-type]
        app.state.manager = manager
        await manager.start()
        try:
            yield
        finally:
            await manager.shutdown()

    app.router.lifespan_context = lifespan
    return app


def auth_headers(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


def finished_run(app: FastAPI, token: str | None) -> str:
    """A run that went through the whole loop over the fakes: its id makes the per-run routes answer 200."""
    with get_client(app) as client:
        headers = auth_headers(token)
        body = {"name": "fuzz", "dataset": "demo", "limit": 1, "config": {"k": 1, "retention": False}}
        created = client.post("/v1/runs", json=body, headers=headers)
        assert created.status_code == 202, created.text
        run_id = created.json()["id"]
        deadline = time.monotonic() + 30
        while (status := client.get(f"/v1/runs/{run_id}", headers=headers).json()["status"]) not in FINISHED:
            assert time.monotonic() < deadline, f"run {run_id} still {status}"
            time.sleep(0.05)
        assert status == "succeeded", status
    return run_id


@pytest.fixture(scope="module")
def token() -> str | None:
    """The bearer token the app requires and every fuzzed request sends: the fuzzer goes past the token check
    (tests/unit/test_security_http.py checks that a request without it gets 401)."""
    return "fuzz-token-0123456789abcdef"


@pytest.fixture(scope="module")
def api_schema(tmp_path_factory: pytest.TempPathFactory, token: str | None) -> Iterator[Any]:
    app = fuzzed_app(LocalStore(tmp_path_factory.mktemp("fuzz-store")), token)
    loaded = schemathesis.openapi.from_asgi("/openapi.json", app, headers=auth_headers(token))
    known_run = finished_run(app, token)

    @loaded.hook
    def flatmap_path_parameters(context: Any, path_parameters: dict[str, Any] | None) -> Any:
        """Random run ids only ever meet a 404; half of the cases use a finished run's id instead."""
        if not path_parameters or "run_id" not in path_parameters:
            return st.just(path_parameters)
        return st.sampled_from([path_parameters, {**path_parameters, "run_id": known_run}])

    @loaded.hook
    def map_body(context: Any, body: Any) -> Any:
        """Most generated run bodies break the one rule the schema cannot say (exactly one of `dataset` and
        `passages`) and stop at validation; keep that rule so the rest of the body reaches the run manager."""
        if context.operation.label != "POST /v1/runs" or not isinstance(body, dict):
            return body
        if "passages" in body:
            return {key: value for key, value in body.items() if key != "dataset"}
        return {**body, "dataset": "demo"}

    yield loaded
    shutdown_lifespans()  # the manager's shutdown: runs stop before the store's directory goes


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=DEADLINE_MS,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    derandomize=True,
)
def test_no_operation_answers_with_a_server_error_or_off_its_schema(case, token):
    response = case.call_and_validate(headers=auth_headers(token), checks=CHECKS)
    SEEN.setdefault(case.operation.label, set()).add(response.status_code)


#: operation -> the statuses its fuzzed requests got (filled by the test above, read by the one below).
SEEN: dict[str, set[int]] = {}


def test_the_fuzzer_got_past_the_door():
    """Not a vacuous pass: every operation was reached with the token and the Host the app accepts, and
    each answered something other than 400/401 at least once (a success, a 404, a 422...)."""
    assert SEEN, "the fuzz test ran no case"
    for operation, statuses in SEEN.items():
        assert statuses - {400, 401}, f"{operation} only ever answered {sorted(statuses)}"
    assert any(s < 300 for statuses in SEEN.values() for s in statuses)
