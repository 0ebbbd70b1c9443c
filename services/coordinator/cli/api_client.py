"""The coordinator's HTTP API as the `seal-lab` commands use it: the connection (token, HTTPS), requests and
their errors, following a run to its end, saving its report, and the terminal the commands print to."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

import httpx
import typer
from httpx_sse import SSEError, connect_sse
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape

from seal_lab.security import Security, security_from_environment

from ..run.result_schemas import RunResults
from ..run.schemas import RunEvent, RunSummary
from .display import render_results
from .progress import progress_view

console = Console(stderr=True)
out = Console()


class CoordinatorError(Exception):
    pass


def connect(url: str, timeout: float, security: Security | None = None) -> httpx.Client:
    """A client of the coordinator at `url` that sends the shared token on every request and checks an
    HTTPS coordinator against the lab CA (presenting this machine's certificate under mutual TLS).
    `security`: from the environment unless given (`SEAL_AUTH_TOKEN`, `SEAL_TLS_*`; the CLI is an entry point)."""
    if security is None:
        security = security_from_environment("seal-lab")
    token = security.token_value
    headers = {"Authorization": f"Bearer {token}"} if token is not None else None
    verify = security.tls.client_context() if security.tls is not None else True
    return httpx.Client(base_url=url, timeout=timeout, headers=headers, verify=verify)


@contextlib.contextmanager
def session(url: str, timeout: float, security: Security | None = None) -> Iterator[httpx.Client]:
    """`connect`, for a command, and the one place the commands' errors are handled: the coordinator's
    refusals, bad input (CoordinatorError), a coordinator out of reach and a file that cannot be read or
    written each end the command with one line (exit 2) that says what to do, never a traceback."""
    try:
        with connect(url, timeout=timeout, security=security) as client:
            yield client
    except CoordinatorError as exc:
        fail(str(exc))
    except httpx.TransportError as exc:
        fail(unreachable(url, exc))
    except OSError as exc:  # a report or an adapter's files written where they cannot be
        fail(str(exc))


def unreachable(url: str, exc: httpx.TransportError) -> str:
    """One line for a coordinator that cannot be reached: which URL was tried, why, and what to do."""
    reason = str(exc) or type(exc).__name__
    if isinstance(exc, httpx.ConnectError):
        return (
            f"cannot reach the coordinator at {url} ({reason}). Start a local stack with `seal-lab up` "
            "(it prints the URL to export), or point SEAL_COORDINATOR_URL (or --url) at a running coordinator"
        )
    if isinstance(exc, httpx.TimeoutException):
        return f"the coordinator at {url} did not answer in time ({type(exc).__name__}); try again, or check its logs"
    return f"lost the connection to the coordinator at {url} ({reason})"


def check(response: httpx.Response) -> Any:
    """The response's JSON; CoordinatorError with the coordinator's message (and its code) for a 4xx/5xx."""
    if response.status_code >= 400:
        try:
            body = response.json()
            code = body.get("code")
            message = body.get("message", body.get("detail", response.text))  # `detail`: older coordinators
        except (ValueError, AttributeError):
            code, message = None, response.text
        shown = f"{message} [{code}]" if code else message
        raise CoordinatorError(f"coordinator answered {response.status_code}: {shown}")
    return None if response.status_code == 204 else response.json()


def start_run(client: httpx.Client, body: dict[str, Any]) -> dict[str, Any]:
    return check(client.post("/v1/runs", json=body))


#: Statuses after which a run does nothing more by itself.
FINAL_STATUSES = ("succeeded", "completed_with_errors", "failed", "cancelled")


def cancel_run(client: httpx.Client, run_id: str) -> dict[str, Any]:
    return check(client.post(f"/v1/runs/{run_id}/cancel"))


def iter_runs(
    client: httpx.Client, status: str | None = None, page_size: int = 200
) -> Iterator[dict[str, Any]]:
    """Every run (with `status`, if given), newest first, a page at a time."""
    params: dict[str, Any] = {"page_size": page_size}
    if status:
        params["status"] = status
    while True:
        page = check(client.get("/v1/runs", params=params))
        yield from page["runs"]
        if not page.get("next_page_token"):
            return
        params["page_token"] = page["next_page_token"]


def delete_run(client: httpx.Client, run_id: str) -> None:
    check(client.delete(f"/v1/runs/{run_id}"))


def follow_run(client: httpx.Client, run_id: str, quiet: bool = False) -> dict[str, Any]:
    """Follow the server-sent events until the run finishes (shown by `progress.progress_view`: a bar on a
    terminal, plain lines otherwise); reconnects if dropped."""
    last_seq, connected = -1, False
    with progress_view(console, quiet, stdout=out) as view:
        while True:
            # After a dropped connection: the standard header, and the coordinator sends what came after it.
            headers = {"Last-Event-ID": str(last_seq)} if last_seq >= 0 else {}
            try:
                with connect_sse(
                    client, "GET", f"/v1/runs/{run_id}/events", headers=headers, timeout=60
                ) as source:
                    if source.response.status_code >= 400:
                        source.response.read()
                        check(source.response)
                    connected = True
                    for sse in source.iter_sse():
                        if sse.event not in ("summary", "run") or not sse.data:
                            # The coordinator's keep-alive (`: ping` every 15 s): once an event had an id,
                            # httpx-sse hands it over as an empty message (the spec keeps the last id).
                            continue
                        try:
                            data = json.loads(sse.data)
                        except json.JSONDecodeError:
                            raise CoordinatorError(
                                f"the coordinator's event stream sent a {sse.event!r} event that is not JSON"
                            ) from None
                        if sse.event == "summary":
                            summary = _streamed(data)
                            view.summary(summary)
                            if summary.status in FINAL_STATUSES:
                                return check(client.get(f"/v1/runs/{run_id}"))
                        elif sse.event == "run":
                            event = _event(data)
                            seq = int(sse.id) if sse.id else event.seq if event else last_seq
                            last_seq = max(last_seq, seq)
                            if event is not None:
                                view.event(event)
            except (httpx.TransportError, SSEError) as exc:
                if not connected and isinstance(exc, httpx.ConnectError):
                    raise  # never reached: no coordinator there (`session` says so), not a dropped stream
                view.notice(f"[retry] lost the coordinator ({type(exc).__name__}); reconnecting")
                time.sleep(2)


def _streamed(data: object) -> RunSummary:
    """A `summary` event of the stream, typed; a clear error when it is not one."""
    try:
        return RunSummary.model_validate(data)
    except ValidationError as exc:
        raise CoordinatorError(
            f"the coordinator's event stream sent a summary this seal-lab cannot read ({_first_error(exc)})"
        ) from None


def _event(data: object) -> RunEvent | None:
    """A run event of the stream, typed; None for one this version does not know (a newer coordinator's
    kind), which no view would show."""
    try:
        return RunEvent.model_validate(data)
    except ValidationError:
        return None


def _first_error(exc: ValidationError) -> str:
    first = exc.errors()[0]
    return f"{'.'.join(map(str, first['loc']))}: {first['msg']}"


def finish(detail: dict[str, Any], as_json: bool) -> None:
    if as_json:
        out.print_json(json.dumps(detail))
    elif detail.get("results"):
        render_results(out, _results(detail["results"]))
    if detail["status"] == "failed":
        console.print(f"[red]run {detail['id']} failed: {detail['error']}")
        raise typer.Exit(1)
    if detail["status"] == "cancelled":
        console.print(f"[yellow]run {detail['id']} was cancelled")
        raise typer.Exit(1)


def _results(data: object) -> RunResults:
    """A run's results as the API sent them, typed (the coordinator's own model: run/result_schemas.py)."""
    try:
        return RunResults.model_validate(data)
    except ValidationError as exc:
        fail(
            f"the coordinator's results do not read as this seal-lab's ({_first_error(exc)}); --json shows them"
        )


def fail(message: str) -> NoReturn:
    console.print(f"[red]error:[/red] {escape(message)}", soft_wrap=True)  # one line, even in a log
    raise typer.Exit(2)


def save_report(client: httpx.Client, run_id: str, path: Path) -> None:
    response = client.get(f"/v1/runs/{run_id}/report")
    if response.status_code >= 400:
        check(response)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(response.text, encoding="utf-8")
    console.print(f"report saved to {path} (open it in a browser)")
