"""The HTTP routes over a stand-in run manager: status codes, the typed results, the event stream."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from seal_lab.formats.passages import parse_passages
from seal_lab.store.local import LocalStore
from services.coordinator.api.app import create_app
from services.coordinator.api.deps import get_manager
from services.coordinator.engine.errors import RunNotFound
from services.coordinator.engine.state import RunState
from services.coordinator.run.result_schemas import RunResults
from services.coordinator.run.schemas import RunConfig, RunEvent
from services.coordinator.settings import CoordinatorSettings

PASSAGES = parse_passages(
    [{"title": "T", "context": "The lamp is red.", "questions": [{"question": "Colour?", "answer": "red"}]}],
    "test",
)
RESULTS = {
    "summary": {"metric": "f1", "passages": 1},
    "passages": [{"passage_id": "p", "self_edits": []}],
    "rounds": [
        {"round": 0, "policy_adapter_key": "", "summary": {}, "policy_update": None, "passages": []},
    ],
    "heldout": None,
    "what_worked": {"by_format": {}},
    "gain_vs_retention": [],
    "phase_seconds": {"train": 3},
    "a_key_from_a_newer_coordinator": {"kept": True},
}


class StandInManager:
    def __init__(self, runs: list[RunState], ready: bool = True) -> None:
        self.runs = {run.id: run for run in runs}
        self.ready = ready

    def get(self, run_id: str) -> RunState:
        if run_id not in self.runs:
            raise RunNotFound(f"no run {run_id!r}")
        return self.runs[run_id]

    async def find(self, run_id: str) -> RunState:
        return self.get(run_id)

    def summaries(self, before: object = None) -> list:
        newest_first = sorted(self.runs.values(), key=lambda r: (r.created_at, r.id), reverse=True)
        return [run.summary() for run in newest_first]


def _run(run_id: str, status: str, results: dict | None = None) -> RunState:
    run = RunState(run_id, "name", RunConfig(retention=False), PASSAGES, created_at=1.0, status=status)
    run.results = None if results is None else RunResults.model_validate(results)
    run.events = [RunEvent(seq=i, ts=1.0, kind="job", message=f"job {i}") for i in range(3)]
    return run


@pytest.fixture
def client(tmp_path):
    app = create_app(CoordinatorSettings(), LocalStore(tmp_path))
    manager = StandInManager([_run("run-done", "succeeded", RESULTS), _run("run-busy", "running")])
    app.dependency_overrides[get_manager] = lambda: manager
    return TestClient(app)  # no lifespan: the stand-in is the manager


def test_results_are_typed_and_pass_every_key_through_unchanged(client):
    response = client.get("/v1/runs/run-done/results")
    assert response.status_code == 200
    assert response.json() == RESULTS
    assert client.get("/v1/runs/run-done").json()["results"] == RESULTS
    schema = client.get("/openapi.json").json()
    results_schema = schema["components"]["schemas"]["RunResults"]
    assert {"summary", "rounds", "heldout", "what_worked"} <= set(results_schema["properties"])


def test_unfinished_and_unknown_runs_get_clear_errors(client):
    busy = client.get("/v1/runs/run-busy/results")
    assert busy.status_code == 409 and "no results yet (status running)" in busy.json()["detail"]
    for path in ("", "/results", "/report", "/events"):
        response = client.get(f"/v1/runs/run-nope{path}")
        assert response.status_code == 404 and "run-nope" in response.json()["detail"], path


def test_event_stream_sends_events_after_the_cursor_then_the_closing_summary(client):
    with client.stream("GET", "/v1/runs/run-done/events", params={"after": 0}) as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in stream.iter_lines() if line]
    names = [line[7:] for line in lines if line.startswith("event: ")]
    data = [json.loads(line[6:]) for line in lines if line.startswith("data: ")]
    assert names == ["run", "run", "summary"]
    assert [d["seq"] for d in data[:2]] == [1, 2]
    assert data[-1]["status"] == "succeeded" and data[-1]["id"] == "run-done"


def test_health_is_503_until_the_store_answered(tmp_path):
    app = create_app(CoordinatorSettings(), LocalStore(tmp_path))
    app.dependency_overrides[get_manager] = lambda: StandInManager([], ready=False)
    response = TestClient(app).get("/healthz")
    assert response.status_code == 503 and response.json()["status"] == "waiting for the object store"
