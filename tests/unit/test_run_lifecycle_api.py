"""The run lifecycle as job APIs have it: a paged, filtered list; DELETE; one error body with a machine code;
`Location` on create; RFC 3339 times; an event stream resumed with Last-Event-ID. Over a stand-in manager
(test_routes.py) where the routes alone decide, and over the real run manager and fake stubs for delete."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from seal_lab.security import Security
from seal_lab.store.local import LocalStore
from services.coordinator.api.app import create_app
from services.coordinator.api.deps import get_manager
from services.coordinator.api.paging import page
from services.coordinator.engine.manager import RunManager
from services.coordinator.engine.records import run_ids
from services.coordinator.engine.state import RunState
from services.coordinator.settings import CoordinatorSettings
from tests.unit.fake_services import FakeClients
from tests.unit.test_orchestrator import REQUEST, run_to_end, settings, until
from tests.unit.test_routes import RESULTS, StandInManager, _run
from tests.unit.test_run_cancel import with_api


def _runs(count: int) -> list[RunState]:
    """`count` runs created a second apart (run-00 oldest), every third one failed."""
    runs = []
    for i in range(count):
        run = _run(f"run-{i:02d}", "failed" if i % 3 == 0 else "succeeded", RESULTS)
        run.created_at = run.updated_at = 1_700_000_000.0 + i
        runs.append(run)
    return runs


def _client(tmp_path: Any, runs: list[RunState], **settings_values: Any) -> tuple[TestClient, StandInManager]:
    app = create_app(CoordinatorSettings(**settings_values), LocalStore(tmp_path))
    manager = StandInManager(runs)
    app.dependency_overrides[get_manager] = lambda: manager
    return TestClient(app), manager


def _error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["code"] == code and body["message"], body
    return body


def test_the_list_pages_newest_first_and_pages_already_read_do_not_shift_when_runs_are_added(tmp_path):
    client, manager = _client(tmp_path, _runs(7))
    first = client.get("/v1/runs", params={"page_size": 3}).json()
    assert [r["id"] for r in first["runs"]] == ["run-06", "run-05", "run-04"]
    newer = _run("run-99", "succeeded")
    newer.created_at = 1_800_000_000.0
    manager.runs[newer.id] = newer  # created while the client pages
    second = client.get("/v1/runs", params={"page_size": 3, "page_token": first["next_page_token"]}).json()
    assert [r["id"] for r in second["runs"]] == ["run-03", "run-02", "run-01"]
    third = client.get("/v1/runs", params={"page_size": 3, "page_token": second["next_page_token"]}).json()
    assert [r["id"] for r in third["runs"]] == ["run-00"] and third["next_page_token"] is None
    assert client.get("/v1/runs").json()["runs"][0]["id"] == "run-99"  # default size holds them all


def test_runs_created_in_the_same_instant_page_by_id_without_repeats():
    runs = _runs(5)
    for run in runs:
        run.created_at = 5.0
    seen, token = [], None
    while True:
        chunk, token = page(
            lambda _: sorted(runs, key=lambda each: (each.created_at, each.id), reverse=True), 2, token, None
        )
        seen += [r.id for r in chunk]
        if token is None:
            break
    assert seen == ["run-04", "run-03", "run-02", "run-01", "run-00"]


def test_the_list_filters_by_status_and_refuses_an_unknown_status_or_size(tmp_path):
    client, _ = _client(tmp_path, _runs(7))
    failed = client.get("/v1/runs", params={"status": "failed", "page_size": 2}).json()
    assert [r["id"] for r in failed["runs"]] == ["run-06", "run-03"]
    rest = client.get(
        "/v1/runs", params={"status": "failed", "page_size": 2, "page_token": failed["next_page_token"]}
    )
    assert [r["id"] for r in rest.json()["runs"]] == ["run-00"]
    bad_status = _error(client.get("/v1/runs", params={"status": "exploded"}), 422, "validation_error")
    assert bad_status["detail"][0]["loc"] == ["query", "status"]
    _error(client.get("/v1/runs", params={"page_size": 201}), 422, "validation_error")
    assert len(client.get("/v1/runs", params={"page_size": 200}).json()["runs"]) == 7


@pytest.mark.parametrize("token", ["not-base64!", "bm90IGpzb24", "WzEsIDJd", "WyJhIiwgImIiXQ"])
def test_a_page_token_the_coordinator_did_not_give_out_is_refused_with_its_code(tmp_path, token):
    client, _ = _client(tmp_path, _runs(2))
    body = _error(client.get("/v1/runs", params={"page_token": token}), 422, "invalid_page_token")
    assert "next_page_token" in body["message"]


def test_every_error_has_a_code_a_message_and_a_detail(tmp_path):
    client, _ = _client(tmp_path, _runs(1), max_body_bytes=1024)
    missing = _error(client.get("/v1/runs/run-nope"), 404, "run_not_found")
    assert missing["detail"] == missing["message"] == "no run 'run-nope'"  # `detail`: what old clients read
    _error(client.get("/v1/no-such-route"), 404, "not_found")
    busy = _run("run-busy", "running")
    client.app.dependency_overrides[get_manager]().runs[busy.id] = busy
    _error(client.get("/v1/runs/run-busy/results"), 409, "results_not_ready")
    invalid = _error(client.post("/v1/runs", json={"dataset": "demo", "bogus": 1}), 422, "validation_error")
    assert invalid["detail"] == [
        {"loc": ["body", "bogus"], "msg": "Extra inputs are not permitted", "type": "extra_forbidden"}
    ]
    assert invalid["message"] == "body.bogus: Extra inputs are not permitted"
    too_large = client.post("/v1/runs", content=b"x" * 2000, headers={"content-type": "application/json"})
    _error(too_large, 413, "payload_too_large")
    schema = client.get("/openapi.json").json()
    responses = schema["paths"]["/v1/runs/{run_id}"]["delete"]["responses"]
    assert responses["409"]["content"]["application/json"]["schema"]["$ref"].endswith("/ApiError")


def test_a_missing_token_is_401_with_the_unauthenticated_code(tmp_path):
    app = create_app(CoordinatorSettings(), LocalStore(tmp_path), Security(SecretStr("t" * 32)))
    app.dependency_overrides[get_manager] = lambda: StandInManager([])
    response = TestClient(app).get("/v1/runs")
    _error(response, 401, "unauthenticated")
    assert response.headers["www-authenticate"] == "Bearer"


def test_times_are_rfc_3339_in_utc(tmp_path):
    client, _ = _client(tmp_path, _runs(1))
    detail = client.get("/v1/runs/run-00").json()
    created = datetime.fromisoformat(detail["created_at"])
    assert (
        created == datetime.fromtimestamp(1_700_000_000, tz=UTC) and created.utcoffset().total_seconds() == 0
    )
    assert detail["created_at"].endswith("Z")
    assert datetime.fromisoformat(detail["recent_events"][0]["ts"]).tzinfo is not None
    listed = client.get("/v1/runs").json()["runs"][0]
    assert datetime.fromisoformat(listed["updated_at"]).tzinfo is not None


def _stream(client: TestClient, path: str, headers: dict[str, str] | None = None) -> list[dict[str, str]]:
    """The `event: run` frames of a finished run's stream, as {id, data}."""
    text = client.get(path, headers=headers or {}).text
    frames = [
        dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        for block in text.split("\n\n")
    ]
    return [f for f in frames if f.get("event") == "run"]


def test_the_event_stream_numbers_its_events_and_resumes_after_last_event_id(tmp_path):
    client, _ = _client(tmp_path, _runs(1))  # run-00 has events 0, 1 and 2
    everything = _stream(client, "/v1/runs/run-00/events")
    assert [f["id"] for f in everything] == ["0", "1", "2"]
    assert '"seq":1' in everything[1]["data"]
    resumed = _stream(client, "/v1/runs/run-00/events", {"Last-Event-ID": "0"})
    assert [f["id"] for f in resumed] == ["1", "2"]  # only what came after
    assert [f["id"] for f in _stream(client, "/v1/runs/run-00/events?after=1")] == ["2"]  # the old alias
    header_wins = _stream(client, "/v1/runs/run-00/events?after=-1", {"Last-Event-ID": "1"})
    assert [f["id"] for f in header_wins] == ["2"]
    _error(client.get("/v1/runs/run-00/events", headers={"Last-Event-ID": "x"}), 422, "validation_error")


def test_create_answers_202_with_the_run_s_location_and_delete_removes_its_records_only(tmp_path):
    config = settings()
    clients = FakeClients(config.trainer_addresses)

    async def body(manager: RunManager, clients: FakeClients, store: LocalStore, http: httpx.AsyncClient):
        # Content-addressed records a run makes and other runs may use: never a run's own records.
        store.put_bytes("adapters/shared-by-another-run/adapter_config.json", b"{}")
        store.put_bytes("datasets/shared-by-another-run.jsonl", b"{}")
        created = await http.post("/v1/runs", json=REQUEST.model_dump(exclude_defaults=True))
        assert (
            created.status_code == 202 and created.headers["location"] == f"/v1/runs/{created.json()['id']}"
        )
        run = await run_to_end(manager, manager.runs[created.json()["id"]])
        assert run.status == "succeeded"
        store.put_bytes(f"quarantine/runs/{run.id}/jobs/x.json.20261129T000000Z", b"{")  # one moved aside
        store.put_bytes("quarantine/runs/run-other/jobs/x.json.20261129T000000Z", b"{")
        assert (await http.delete(f"/v1/runs/{run.id}")).status_code == 204
        assert store.list_keys(f"runs/{run.id}/") == [] and run.id not in run_ids(store)
        assert store.list_keys("quarantine/") == ["quarantine/runs/run-other/jobs/x.json.20261129T000000Z"]
        assert store.exists("adapters/shared-by-another-run/adapter_config.json")
        assert store.exists("datasets/shared-by-another-run.jsonl")
        _error(await http.get(f"/v1/runs/{run.id}"), 404, "run_not_found")
        _error(await http.delete(f"/v1/runs/{run.id}"), 404, "run_not_found")
        assert (await http.get("/v1/runs")).json()["runs"] == []

    with_api(tmp_path, clients, config, body)


def test_a_running_run_is_not_deleted_until_it_is_cancelled(tmp_path):
    config = settings(max_concurrent_passages=1)
    clients = FakeClients(config.trainer_addresses)
    trainer = clients.trainer["trainer-a:1"]
    trainer.hold("Train")

    async def body(manager: RunManager, clients: FakeClients, store: LocalStore, http: httpx.AsyncClient):
        run = await manager.create(REQUEST)
        await until(trainer.holding.is_set)
        refused = _error(await http.delete(f"/v1/runs/{run.id}"), 409, "run_running")
        assert "cancel it first" in refused["message"] and store.list_keys(f"runs/{run.id}/")
        await manager.cancel(run.id)
        assert (await http.delete(f"/v1/runs/{run.id}")).status_code == 204
        assert store.list_keys(f"runs/{run.id}/") == []

    with_api(tmp_path, clients, config, body)
