"""The coordinator as `seal-lab` meets it in the CLI tests: the real FastAPI app (its validation, its 422
messages, its event stream) in process, over a stand-in run manager that records what it was asked."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from seal_lab.errors import NotFound
from seal_lab.formats.passages import parse_passages
from seal_lab.store.local import LocalStore
from services.coordinator.api.app import create_app
from services.coordinator.api.deps import get_manager
from services.coordinator.cli import api_client
from services.coordinator.engine.state import RunState
from services.coordinator.run.records import job_records
from services.coordinator.run.result_schemas import RunResults
from services.coordinator.run.schemas import RunConfig, RunCreate, RunEvent, RunSummary
from services.coordinator.settings import CoordinatorSettings

PASSAGES = parse_passages(
    [{"title": "T", "context": "The lamp is red.", "questions": [{"question": "Colour?", "answer": "red"}]}],
    "test",
)
RESULTS = {
    "summary": {"metric": "f1", "passages": 1},
    "passages": [],
    "rounds": [{"round": 0, "policy_adapter_key": "", "summary": {}, "policy_update": None, "passages": []}],
    "heldout": None,
    "what_worked": {},
    "gain_vs_retention": [],
}


def event(seq: int, kind: str, message: str, job: str = "") -> RunEvent:
    return RunEvent(seq=seq, ts=1_700_000_000.0 + seq, kind=kind, message=message, job=job)


def run_summary(status: str, done: int, total: int = 3, error: str = "") -> RunSummary:
    """A run's summary as the coordinator streams it after a change."""
    return RunSummary(
        id="run-1",
        name="",
        status=status,  # type: ignore[arg-type]
        created_at=1.0,
        updated_at=1.0,
        passages=1,
        jobs_total=total,
        jobs_done=done,
        jobs_failed=int(bool(error)),
        retries=0,
        current="",
        error=error,
    )


def finished_run(run_id: str = "run-done", status: str = "succeeded") -> RunState:
    """A run of one passage whose stream replays a started and finished job, a failed one and a retry."""
    run = RunState(run_id, "a name", RunConfig(k=1, retention=False), PASSAGES, created_at=1.0, status=status)
    run.results = RunResults.model_validate(RESULTS)
    run.jobs = job_records({"0000-baseline": {}, "0000-generate-implications": {"error": "boom"}})
    run.events = [
        event(0, "status", "running"),
        event(1, "progress", "round 0, passage 1/1: baseline", job="0000-baseline"),
        event(2, "job", "done 0000-baseline", job="0000-baseline"),
        event(3, "progress", "round 0, passage 1/1: generate-implications", job="0000-generate-implications"),
        event(4, "retry", "generator unavailable [UNAVAILABLE]; retry 1 in 2s"),
        event(5, "error", "job 0000-generate-implications failed: boom", job="0000-generate-implications"),
    ]
    return run


@dataclass
class StandInManager:
    runs: dict[str, RunState]
    created: list[RunCreate] = field(default_factory=list)
    asked: list[str] = field(default_factory=list)

    def get(self, run_id: str) -> RunState:
        if run_id not in self.runs:
            raise NotFound(f"no run {run_id!r}")
        return self.runs[run_id]

    async def find(self, run_id: str) -> RunState:
        return self.get(run_id)

    def summaries(self, before: object = None) -> list:
        newest_first = sorted(self.runs.values(), key=lambda r: (r.created_at, r.id), reverse=True)
        return [run.summary() for run in newest_first]

    async def create(self, body: RunCreate) -> RunState:
        self.created.append(body)
        return self.runs["run-done"]

    async def resume(self, run_id: str) -> RunState:
        self.asked.append(f"resume {run_id}")
        return self.get(run_id)

    async def cancel(self, run_id: str) -> RunState:
        self.asked.append(f"cancel {run_id}")
        return self.get(run_id)


@dataclass
class Coordinator:
    manager: StandInManager
    #: Every request the CLI made, with its JSON body (None without one).
    requests: list[tuple[str, str, Any]]

    @property
    def sent(self) -> dict[str, Any]:
        """The body of the one POST /v1/runs the CLI sent."""
        bodies = [body for method, path, body in self.requests if (method, path) == ("POST", "/v1/runs")]
        assert len(bodies) == 1, self.requests
        return bodies[0]


class NoLifespanClient(TestClient):
    """`with connect(...)` must not start the app's lifespan: the stand-in is the manager, not a real one."""

    def __enter__(self) -> NoLifespanClient:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


@pytest.fixture
def coordinator(tmp_path, monkeypatch: pytest.MonkeyPatch) -> Coordinator:
    """`seal-lab`'s HTTP client talks to the in-process app."""
    app = create_app(CoordinatorSettings(), LocalStore(tmp_path / "store"))
    stand_in = Coordinator(StandInManager({"run-done": finished_run()}), [])
    app.dependency_overrides[get_manager] = lambda: stand_in.manager

    def record(request: httpx.Request) -> None:
        body = request.read()
        stand_in.requests.append((request.method, request.url.path, json.loads(body) if body else None))

    def client(**kwargs: Any) -> httpx.Client:
        test_client = NoLifespanClient(app, base_url=kwargs["base_url"], headers=kwargs.get("headers"))
        test_client.event_hooks = {"request": [record]}
        return test_client

    monkeypatch.setattr(api_client.httpx, "Client", client)
    return stand_in
