"""Runs: start one, list them (a page at a time), read one, resume a failed one, cancel one, delete one."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response

from ...run.schemas import RunCreate, RunCreated, RunDetail, RunPage, RunStatusName, RunSummary
from ..deps import Manager, Run
from ..errors import responses
from ..paging import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, page
from ..ratelimit import limit_run_starts

router = APIRouter(prefix="/v1/runs", tags=["runs"])


@router.post(
    "",
    status_code=202,
    response_model=RunCreated,
    responses=responses(413, 422, 429, 503),
    dependencies=[Depends(limit_run_starts)],
)
async def create_run(body: RunCreate, manager: Manager, response: Response) -> RunCreated:
    """Start a round of the inner loop on a dataset (inline SEAL-format passages or `demo`). 202 with
    `Location: /v1/runs/{id}`; 429 `budget_exceeded` when the coordinator's budget is spent, 429
    `rate_limited` (with `Retry-After`) when this client starts runs faster than the coordinator allows."""
    run = await manager.create(body)
    response.headers["Location"] = f"/v1/runs/{run.id}"
    return RunCreated(id=run.id, status=run.status, passages=len(run.passages), jobs_total=run.jobs_total)


@router.get("", response_model=RunPage, responses=responses(422))
async def list_runs(
    manager: Manager,
    page_size: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)] = DEFAULT_PAGE_SIZE,
    page_token: Annotated[
        str | None, Query(max_length=1000, description="`next_page_token` of the page before")
    ] = None,
    status: RunStatusName | None = None,
) -> RunPage:
    """Runs newest first, `page_size` at a time (with `status` only, if given). A run created while you
    page comes before the page you are on: pages already read neither shift nor repeat."""
    runs, next_token = page(manager.summaries, page_size, page_token, status)
    return RunPage(runs=runs, next_page_token=next_token)


@router.get("/{run_id}", response_model=RunDetail, responses=responses(404))
async def get_run(run: Run, events: Annotated[int, Query(ge=0, le=2000)] = 50) -> RunDetail:
    """Status, the last `events` events and, once finished, the results."""
    return run.detail(events)


@router.delete("/{run_id}", status_code=204, response_class=Response, responses=responses(404, 409, 503))
async def delete_run(run_id: str, manager: Manager) -> Response:
    """Remove a finished (or failed, or cancelled) run's records. 409 (`run_running`) while it is queued,
    running or paused: cancel it first. The adapters and datasets it made stay (other runs share them)."""
    await manager.delete(run_id)
    return Response(status_code=204)


@router.post(
    "/{run_id}/resume",
    response_model=RunSummary,
    responses=responses(404, 409, 429, 503),
    dependencies=[Depends(limit_run_starts)],
)
async def resume_run(run_id: str, manager: Manager) -> RunSummary:
    """Continue a failed run from its last finished job (409 for a finished or cancelled run; 429 as for a
    new run: the coordinator's budget, or this client's rate of run starts)."""
    return (await manager.resume(run_id)).summary()


@router.post("/{run_id}/cancel", response_model=RunSummary, responses=responses(404, 409, 503))
async def cancel_run(run_id: str, manager: Manager) -> RunSummary:
    """Stop a run for good: its calls to the services are cancelled (they drop its jobs), its queued jobs never
    start, and the cancellation is stored, so that no coordinator resumes it; a cancelled run cannot be
    resumed. The run is `cancelling` until nothing of it runs any more (a continual run's streams each finish
    their step in flight, which its records keep), then `cancelled`; the answer comes when it is, or after
    a couple of seconds with `cancelling` (the events stream says when it ends). Cancelling a cancelled (or
    cancelling) run answers its summary again; a finished run gets 409."""
    return (await manager.cancel(run_id)).summary()
