"""`seal-lab cancel RUN_ID`, and Ctrl-C while `seal-lab run` follows a run: it says how to cancel and leaves
the run alone. The coordinator is an httpx mock transport (no server)."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from services.coordinator.cli import api_client
from services.coordinator.cli import main as cli

SUMMARY = {"id": "run-1", "status": "cancelled", "jobs_done": 3, "jobs_total": 10}


@pytest.fixture
def requests(monkeypatch: pytest.MonkeyPatch) -> list[httpx.Request]:
    """Every request the CLI makes, answered as a coordinator would."""
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.path == "/v1/runs":
            return httpx.Response(
                202, json={"id": "run-1", "status": "queued", "passages": 2, "jobs_total": 10}
            )
        if request.url.path == "/v1/runs/run-1/cancel":
            return httpx.Response(200, json=SUMMARY)
        if request.url.path == "/v1/runs/run-3/cancel":  # a continual run: its step in flight finishes first
            return httpx.Response(200, json={**SUMMARY, "id": "run-3", "status": "cancelling"})
        if request.url.path == "/v1/runs/run-2/cancel":
            return httpx.Response(409, json={"detail": "run run-2 has finished (succeeded)"})
        return httpx.Response(404, json={"detail": "no such route"})

    real_client = httpx.Client

    def client(**kwargs: Any) -> httpx.Client:
        return real_client(transport=httpx.MockTransport(answer), **kwargs)

    monkeypatch.setattr(api_client.httpx, "Client", client)
    return seen


def test_cancel_posts_to_the_cancel_route_and_prints_the_status(requests):
    result = CliRunner().invoke(cli.app, ["cancel", "run-1"])
    assert result.exit_code == 0, result.output
    assert [(r.method, r.url.path) for r in requests] == [("POST", "/v1/runs/run-1/cancel")]
    assert "run-1: cancelled after 3/10 jobs" in result.output


def test_cancel_of_a_run_still_finishing_its_work_in_flight_says_so_and_how_to_see_it_end(requests):
    result = CliRunner().invoke(cli.app, ["cancel", "run-3"])
    assert result.exit_code == 0, result.output
    assert "run-3: cancelling after 3/10 jobs" in result.output
    assert "seal-lab follow run-3" in result.output


def test_cancel_of_a_finished_run_says_why_and_fails(requests):
    result = CliRunner().invoke(cli.app, ["cancel", "run-2"])
    assert result.exit_code == 2 and "409" in result.output and "has finished" in result.output


def test_ctrl_c_while_following_says_how_to_cancel_and_leaves_the_run_running(requests, monkeypatch):
    def interrupted(*_: Any, **__: Any) -> dict[str, Any]:
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "follow_run", interrupted)
    result = CliRunner().invoke(cli.app, ["run", "--limit", "2"])
    assert result.exit_code == 130
    assert "seal-lab cancel run-1" in result.output and "it goes on" in result.output
    # Only the run was created: nothing was cancelled.
    assert [(r.method, r.url.path) for r in requests] == [("POST", "/v1/runs")]
    assert json.loads(requests[0].content)["dataset"] == "demo"


def test_cancel_sends_the_shared_token(requests, monkeypatch):
    monkeypatch.setenv("SEAL_AUTH_TOKEN", "a-token-for-the-cancel-test-1234")
    result = CliRunner().invoke(cli.app, ["cancel", "run-1"])
    assert result.exit_code == 0, result.output
    assert requests[0].headers["authorization"] == "Bearer a-token-for-the-cancel-test-1234"
