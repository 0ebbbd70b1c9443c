"""The coordinator's HTTP API over real generator/trainer/evaluator gRPC servers and a real store."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from seal_lab.store.local import LocalStore
from services.coordinator.api.app import create_app
from services.coordinator.settings import CoordinatorSettings

TINY_PASSAGE = {
    "title": "The Vellum Bell",
    "context": "The Vellum Bell of Ostrany was cast in 1712 by the founder PellArrowby. It weighs 940 kilograms "
    "and rings only on the first Sunday of March.",
    "questions": [
        {"question": "Who cast the Vellum Bell of Ostrany?", "answer": "Pell Arrowby"},
        {"question": "How much does the Vellum Bell weigh?", "answer": "940 kilograms"},
    ],
}
TINY_CONFIG = {"k": 1, "max_new_tokens": 24, "eval_max_new_tokens": 12, "seed": 3, "retention_questions": 8}


def _settings(generator_server, trainer_server, evaluator_server, **overrides) -> CoordinatorSettings:
    values = {
        "generator_address": generator_server.address,
        "trainer_addresses": [trainer_server.address],
        "evaluator_address": evaluator_server.address,
        "initial_backoff_seconds": 0.05,
        "max_backoff_seconds": 0.1,
        **overrides,
    }
    return CoordinatorSettings(**values)


@pytest.fixture(scope="module")
def coordinator_store(tmp_path_factory, shared_store) -> LocalStore:
    return shared_store


@pytest.fixture(scope="module")
def client(generator_server, trainer_server, evaluator_server, coordinator_store) -> Iterator[TestClient]:
    app = create_app(_settings(generator_server, trainer_server, evaluator_server), coordinator_store)
    with TestClient(app) as test_client:
        yield test_client


def wait_finished(client: TestClient, run_id: str, timeout: float = 600) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        detail = client.get(f"/v1/runs/{run_id}").json()
        if detail["status"] in ("succeeded", "completed_with_errors", "failed"):
            return detail
        time.sleep(0.5)
    raise AssertionError(f"run {run_id} did not finish: {detail['status']} {detail['current']}")


@pytest.fixture(scope="module")
def finished_run(client) -> dict:
    response = client.post(
        "/v1/runs", json={"name": "tiny", "passages": [TINY_PASSAGE], "config": TINY_CONFIG}
    )
    assert response.status_code == 202, response.text
    created = response.json()
    # baseline, generate, 1 training, evaluate, retention
    assert created["passages"] == 1 and created["jobs_total"] == 5
    return wait_finished(client, created["id"])


def test_a_run_goes_through_the_whole_inner_loop(finished_run, coordinator_store):
    assert finished_run["status"] == "succeeded", finished_run["error"]
    assert finished_run["jobs_done"] == finished_run["jobs_total"] == 5
    passage = finished_run["results"]["passages"][0]
    edit = passage["self_edits"][0]
    assert passage["baseline"] is not None and edit["scores"] is not None
    metric = finished_run["results"]["summary"]["metric"]
    assert edit["reward"] == pytest.approx(edit["scores"][metric] - passage["baseline"][metric], abs=1e-3)
    assert passage["best"]["adapter_key"] == edit["adapter_key"]
    assert coordinator_store.exists(f"{edit['adapter_key']}/adapter_model.safetensors")
    assert coordinator_store.exists(f"runs/{finished_run['id']}/manifest.json")
    assert edit["preview"].strip() and all(a["answer"] is not None for a in edit["answers"])
    # Every adapter is also scored on the retention set, next to the base model.
    assert passage["baseline_retention"] is not None and edit["retention"] is not None
    assert edit["forgetting"] == pytest.approx(passage["baseline_retention"] - edit["retention"], abs=1e-3)


def test_runs_are_listed_and_events_stream_to_the_end(client, finished_run):
    assert finished_run["id"] in [r["id"] for r in client.get("/v1/runs").json()["runs"]]
    with client.stream("GET", f"/v1/runs/{finished_run['id']}/events") as stream:
        lines = [line for line in stream.iter_lines() if line.startswith("data: ")]
    events = [json.loads(line[6:]) for line in lines]
    assert events[-1]["status"] == "succeeded"  # the closing summary
    assert any(e.get("kind") == "job" for e in events)


def test_unknown_run_is_404(client):
    response = client.get("/v1/runs/run-nope")
    assert response.status_code == 404 and "run-nope" in response.json()["detail"]
    # The event stream checks the run before it starts streaming.
    with client.stream("GET", "/v1/runs/run-nope/events") as stream:
        stream.read()
        assert stream.status_code == 404 and "run-nope" in stream.json()["detail"]
    assert client.post("/v1/runs/run-nope/resume").status_code == 404


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"passages": [{**TINY_PASSAGE, "context": ""}]}, "record 0 ('The Vellum Bell'): 'context' is empty"),
        ({"passages": [{**TINY_PASSAGE, "context": "x" * 1_000_000}]}, "limit"),
        ({"passages": [{"title": "no context", "questions": []}]}, "record 0"),
        ({"passages": [TINY_PASSAGE, {"context": "ok", "questions": [{"question": "q?"}]}]}, "record 1"),
        ({"passages": "not a list"}, "passages"),
        ({"passages": []}, "empty"),
        ({}, "exactly one of `dataset` or `passages`"),
        ({"dataset": "demo", "config": {"k": 0}}, "config.k"),
        ({"dataset": "demo", "config": {"temperature": 9}}, "config.temperature"),
        ({"dataset": "demo", "config": {"epochs": 1_000_000}}, "config.epochs"),
    ],
)
def test_bad_input_gets_a_clear_4xx_and_creates_nothing(client, body, message):
    before = len(client.get("/v1/runs").json()["runs"])
    response = client.post("/v1/runs", json=body)
    assert response.status_code == 422
    assert message in response.json()["message"]
    assert "Traceback" not in response.text
    assert len(client.get("/v1/runs").json()["runs"]) == before


def test_a_body_that_is_not_json_is_422(client):
    response = client.post("/v1/runs", content=b"{not json", headers={"content-type": "application/json"})
    assert response.status_code == 422 and "JSON" in response.json()["message"]


@pytest.mark.parametrize(
    ("key", "message"),
    [("../../etc/passwd", "invalid object key"), ("adapters/missing-policy", "no adapter at key")],
)
def test_a_policy_adapter_key_is_checked_when_the_run_is_created(client, key, message):
    """Refused at once (it used to be accepted with 202, and its generation job failed later)."""
    body = {"passages": [TINY_PASSAGE], "config": {**TINY_CONFIG, "policy_adapter_key": key}}
    before = len(client.get("/v1/runs").json()["runs"])
    response = client.post("/v1/runs", json=body)
    assert response.status_code == 422 and message in response.json()["message"]
    assert len(client.get("/v1/runs").json()["runs"]) == before


def test_a_refused_job_fails_alone_and_the_run_goes_on(client, coordinator_store):
    # An adapter that is there but was trained for another base model: only the generator can tell.
    key = "adapters/foreign-policy"
    coordinator_store.put_json(f"{key}/adapter_config.json", {"r": 4, "target_modules": ["q_proj"]})
    coordinator_store.put_bytes(f"{key}/adapter_model.safetensors", b"weights")
    coordinator_store.put_json(f"{key}/seal_adapter.json", {"base_model_fingerprint": "another-model"})
    body = {"passages": [TINY_PASSAGE], "config": {**TINY_CONFIG, "policy_adapter_key": key}}
    detail = wait_finished(client, client.post("/v1/runs", json=body).json()["id"])
    assert detail["status"] == "completed_with_errors"
    assert detail["jobs_failed"] == 1
    passage = detail["results"]["passages"][0]
    assert passage["baseline"] is not None  # the baseline job still ran
    assert any("FAILED_PRECONDITION" in e and "foreign-policy" in e for e in passage["errors"])


def test_an_unreachable_trainer_fails_the_run_clearly_and_it_can_resume(
    generator_server, trainer_server, evaluator_server, tmp_path
):
    store = LocalStore(tmp_path / "store")
    dead = _settings(
        generator_server, trainer_server, evaluator_server, trainer_addresses=["127.0.0.1:1"], max_attempts=2
    )
    with TestClient(create_app(dead, store)) as dead_client:
        run_id = dead_client.post(
            "/v1/runs", json={"passages": [TINY_PASSAGE], "config": TINY_CONFIG}
        ).json()["id"]
        detail = wait_finished(dead_client, run_id)
    assert detail["status"] == "failed"
    assert "trainer unavailable" in detail["error"] and "127.0.0.1:1" in json.dumps(detail["recent_events"])
    assert detail["retries"] >= 1
    # A coordinator pointed at a live trainer resumes the same run from the store and finishes it.
    live = _settings(generator_server, trainer_server, evaluator_server)
    with TestClient(create_app(live, store)) as live_client:
        assert live_client.get(f"/v1/runs/{run_id}").json()["status"] == "failed"
        assert live_client.post(f"/v1/runs/{run_id}/resume").status_code == 200
        assert wait_finished(live_client, run_id)["status"] == "succeeded"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            {"passages": [TINY_PASSAGE], "teachers": [{"name": "gpt", "passages": [{"context": "x"}]}]},
            "teachers are compared on held-out passages",
        ),
        (
            {"passages": [TINY_PASSAGE], "config": {"heldout": 1}},
            "leaves none of the 1 passages for training",
        ),
        (
            {"passages": [TINY_PASSAGE], "heldout_passages": [TINY_PASSAGE]},
            "both training and held-out",
        ),
        (
            {
                "passages": [TINY_PASSAGE],
                "heldout_passages": [{**TINY_PASSAGE, "context": "Another passage about bells entirely."}],
                "teachers": [
                    {"name": "gpt", "passages": [{"context": "unrelated", "completions": ["1. a b c"]}]}
                ],
            },
            "none of its 1 passages",
        ),
        (
            {
                "passages": [TINY_PASSAGE],
                "heldout_passages": [{**TINY_PASSAGE, "context": "Another passage about bells entirely."}],
                "teachers": [{"name": "gpt", "passages": [{"context": "x", "completions": "not a list"}]}],
            },
            "'completions' must be a list of strings",
        ),
        ({"dataset": "demo", "config": {"rounds": 11}}, "config.rounds"),
        ({"dataset": "demo", "config": {"directive_search": [{}]}}, "at least one field"),
    ],
)
def test_experiment_requests_are_refused_with_a_message(client, body, message):
    response = client.post("/v1/runs", json=body)
    assert response.status_code == 422, response.text
    assert message in response.json()["message"]


def test_results_and_report_of_unknown_or_unfinished_runs(client):
    assert client.get("/v1/runs/run-nope/results").status_code == 404
    assert client.get("/v1/runs/run-nope/report").status_code == 404
