"""The CLI over the run lifecycle API: `follow` resumes a dropped event stream with Last-Event-ID, `list`
pages through every run, `delete` deletes, and errors show the coordinator's message and code. The
coordinator is an httpx mock transport (no server)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from services.coordinator.cli import api_client
from services.coordinator.cli import main as cli
from services.coordinator.run.schemas import RunEvent
from tests.unit.cli_coordinator import run_summary

DETAIL = {"id": "run-1", "status": "succeeded", "results": None, "error": ""}


def frame(event: str, data: dict[str, Any], event_id: int | None = None) -> bytes:
    lines = (
        [f"event: {event}"]
        + ([f"id: {event_id}"] if event_id is not None else [])
        + [f"data: {json.dumps(data)}"]
    )
    return ("\n".join(lines) + "\n\n").encode()


def run_event(seq: int, message: str) -> bytes:
    """A run event as the coordinator streams it (RunEvent's JSON)."""
    event = RunEvent(seq=seq, ts=1.0, kind="status", message=message)
    return frame("run", event.model_dump(mode="json"), seq)


def summary(status: str, done: int) -> bytes:
    """The run's summary as the coordinator streams it (RunSummary's JSON)."""
    return frame("summary", run_summary(status, done).model_dump(mode="json"))


def listed(run_id: str) -> dict[str, Any]:
    return {"id": run_id, "status": "failed", "jobs_done": 1, "jobs_total": 3, "name": f"name of {run_id}"}


class DroppedStream(httpx.SyncByteStream):
    """An event stream whose connection drops after `chunks`."""

    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = chunks

    def __iter__(self) -> Iterator[bytes]:
        yield from self.chunks
        raise httpx.ReadError("connection reset by peer")


@pytest.fixture
def coordinator(monkeypatch: pytest.MonkeyPatch) -> list[httpx.Request]:
    """Every request the CLI makes; the first event stream drops after events 0 and 1."""
    seen: list[httpx.Request] = []
    pages = {
        None: {"runs": [listed("run-3"), listed("run-2")], "next_page_token": "p2"},
        "p2": {"runs": [listed("run-1")], "next_page_token": None},
    }

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        path, sse = request.url.path, {"content-type": "text/event-stream"}
        if sum(r.url.path.endswith("/events") for r in seen) > 3:  # a client that never resumes: stop it
            return httpx.Response(500, json={"code": "internal", "message": "reconnected too often"})
        if path == "/v1/runs/run-1/events" and "last-event-id" not in request.headers:
            chunks = [run_event(0, "running"), summary("running", 1), run_event(1, "halfway")]
            return httpx.Response(200, headers=sse, stream=DroppedStream(chunks))
        if path == "/v1/runs/run-1/events":
            body = run_event(2, "run succeeded") + summary("succeeded", 3)
            return httpx.Response(200, headers=sse, content=body)
        if path == "/v1/runs/run-1" and request.method == "GET":
            return httpx.Response(200, json=DETAIL)
        if path == "/v1/runs/run-1" and request.method == "DELETE":
            return httpx.Response(204)
        if path == "/v1/runs/run-2" and request.method == "DELETE":
            message = "run run-2 is running; cancel it first (POST /v1/runs/run-2/cancel)"
            return httpx.Response(409, json={"code": "run_running", "message": message, "detail": message})
        if path == "/v1/runs":
            return httpx.Response(200, json=pages[request.url.params.get("page_token")])
        return httpx.Response(404, json={"detail": "no such route"})  # an older coordinator's body

    real_client = httpx.Client

    def client(**kwargs: Any) -> httpx.Client:
        return real_client(transport=httpx.MockTransport(answer), **kwargs)

    monkeypatch.setattr(api_client.httpx, "Client", client)
    monkeypatch.setattr(api_client.time, "sleep", lambda _: None)
    return seen


def test_follow_reconnects_after_a_dropped_stream_with_last_event_id(coordinator):
    result = CliRunner().invoke(cli.app, ["follow", "run-1"])
    assert result.exit_code == 0, result.output
    streams = [r for r in coordinator if r.url.path.endswith("/events")]
    assert len(streams) == 2
    assert "last-event-id" not in streams[0].headers and streams[0].headers["accept"] == "text/event-stream"
    assert streams[1].headers["last-event-id"] == "1"  # the coordinator sends only what came after
    # Each event once, in order: events 0 and 1 are not repeated after the reconnection. Without a terminal
    # each is a timestamped plain line (progress.LineView).
    lines = [re.sub(r"^\d\d:\d\d:\d\d ", "", line.strip()) for line in result.output.splitlines()]
    events = [line for line in lines if line.startswith(("[status]", "[retry]", "lost"))]
    assert events == [
        "[status] running",
        "[status] halfway",
        "[retry] lost the coordinator (ReadError); reconnecting",
        "[status] run succeeded",
    ]


def test_list_pages_through_every_run(coordinator):
    result = CliRunner().invoke(cli.app, ["list", "--status", "failed"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert [line.split()[0] for line in result.output.splitlines()] == ["run-3", "run-2", "run-1"]
    assert [(r.url.params["status"], r.url.params.get("page_token")) for r in coordinator] == [
        ("failed", None),
        ("failed", "p2"),
    ]


def test_iter_runs_follows_next_page_token(coordinator):
    with httpx.Client(base_url="http://c") as client:
        assert [r["id"] for r in api_client.iter_runs(client)] == ["run-3", "run-2", "run-1"]
    tokens = [r.url.params.get("page_token") for r in coordinator]
    assert tokens == [None, "p2"]


def test_delete_deletes_and_a_refusal_shows_the_message_and_code(coordinator):
    done = CliRunner().invoke(cli.app, ["delete", "run-1"])
    assert done.exit_code == 0 and "run-1: deleted" in done.output
    assert (coordinator[0].method, coordinator[0].url.path) == ("DELETE", "/v1/runs/run-1")
    refused = CliRunner().invoke(cli.app, ["delete", "run-2"], env={"COLUMNS": "200"})
    assert refused.exit_code == 2
    assert (
        "409: run run-2 is running; cancel it first" in refused.output and "[run_running]" in refused.output
    )


def test_an_older_coordinator_s_detail_is_still_shown():
    with pytest.raises(api_client.CoordinatorError, match="404: no such route"):
        api_client.check(httpx.Response(404, json={"detail": "no such route"}))


def _coordinator_streaming(monkeypatch: pytest.MonkeyPatch, streams: list[bytes]) -> None:
    """A stand-in coordinator: each GET of the events answers the next of `streams`; the run is DETAIL."""

    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/events"):
            return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=streams.pop(0))
        return httpx.Response(200, json=DETAIL)

    real_client = httpx.Client
    monkeypatch.setattr(
        api_client.httpx, "Client", lambda **kw: real_client(transport=httpx.MockTransport(answer), **kw)
    )


def test_follow_skips_the_keep_alive_that_comes_between_events(monkeypatch):
    """FastAPI's SSE sends `: ping` every 15 s; after an event with an id, httpx-sse hands it over as an empty
    message. Before the fix, every run longer than 15 s ended the CLI with a JSONDecodeError traceback."""
    from fastapi.sse import KEEPALIVE_COMMENT

    streams = [run_event(0, "running") + KEEPALIVE_COMMENT + KEEPALIVE_COMMENT + summary("succeeded", 3)]
    _coordinator_streaming(monkeypatch, streams)
    result = CliRunner().invoke(cli.app, ["follow", "run-1"])
    assert result.exit_code == 0, result.output
    assert "[status] running" in result.output and "Traceback" not in result.output


def _closed_port() -> int:
    import socket

    with socket.socket() as probe:  # bound, never listening: a connection is refused at once
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.parametrize(
    "command",
    [
        ["list"],
        ["status", "run-1"],
        ["follow", "run-1"],  # before the fix: "[retry] lost the coordinator" every 2 s, for ever
        ["resume", "run-1"],
        ["cancel", "run-1"],
        ["delete", "run-1"],
        ["report", "run-1", "--json"],
        ["adapters", "list"],
        ["adapters", "show", "adapters/abc"],
        ["adapters", "export", "adapters/abc", "exported"],
        ["run", "--no-follow"],
        ["run"],
    ],
    ids=" ".join,
)
def test_a_coordinator_out_of_reach_is_one_line_naming_the_url_and_what_to_do(command, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    url = f"http://127.0.0.1:{_closed_port()}"
    result = CliRunner().invoke(cli.app, [*command, "--url", url], env={"COLUMNS": "300"})
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, lines
    assert f"cannot reach the coordinator at {url}" in lines[0]
    assert "seal-lab up" in lines[0] and "SEAL_COORDINATOR_URL" in lines[0]
    assert "Traceback" not in result.output


def test_the_url_tried_is_the_one_seal_coordinator_url_names(monkeypatch):
    url = f"http://127.0.0.1:{_closed_port()}"
    result = CliRunner().invoke(cli.app, ["list"], env={"COLUMNS": "300", "SEAL_COORDINATOR_URL": url})
    assert result.exit_code == 2 and f"error: cannot reach the coordinator at {url} (" in result.output
    assert "Connection refused" in result.output and len(result.output.strip().splitlines()) == 1


def test_a_file_that_cannot_be_written_is_one_line_too(monkeypatch, tmp_path):
    real_client = httpx.Client
    answer = lambda request: httpx.Response(200, text="<html></html>")  # noqa: E731
    monkeypatch.setattr(
        api_client.httpx, "Client", lambda **kw: real_client(transport=httpx.MockTransport(answer), **kw)
    )
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    result = CliRunner().invoke(cli.app, ["report", "run-1", "-o", str(blocker / "report.html")])
    assert result.exit_code == 2 and result.output.startswith("error: ") and "a-file" in result.output
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1


def test_follow_skips_an_event_of_a_kind_this_version_does_not_know_and_refuses_a_summary_it_cannot_read(
    monkeypatch,
):
    """The stream is read into RunEvent and RunSummary: an event of a newer coordinator's kind is left out (no
    view shows it), a summary that is not one is a clear error rather than a KeyError."""
    newer = frame("run", {"seq": 1, "ts": 1.0, "kind": "distilling", "message": "a newer kind"}, 1)
    streams = [
        run_event(0, "running") + newer + run_event(2, "run succeeded") + summary("succeeded", 3),
        frame("summary", {"status": "succeeded"}),
    ]
    _coordinator_streaming(monkeypatch, streams)
    result = CliRunner().invoke(cli.app, ["follow", "run-1"])
    assert result.exit_code == 0, result.output
    assert "[status] running" in result.output and "[status] run succeeded" in result.output
    assert "a newer kind" not in result.output
    refused = CliRunner().invoke(cli.app, ["follow", "run-1"], env={"COLUMNS": "200"})
    assert refused.exit_code == 2
    assert "sent a summary this seal-lab cannot read (id: Field required)" in refused.output
