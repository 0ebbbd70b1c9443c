"""Runs: start one, list them, read one, resume a failed one, cancel one."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from ..schemas import RunCreate, RunCreated, RunDetail, RunSummary
from .deps import Manager, Run

router = APIRouter(prefix="/v1/runs", tags=["runs"])


@router.post("", status_code=202, response_model=RunCreated)
async def create_run(body: RunCreate, manager: Manager) -> RunCreated:
    """Start a round of the inner loop on a dataset (inline SEAL-format passages or `demo`)."""
    run = await manager.create(body)
    return RunCreated(id=run.id, status=run.status, passages=len(run.passages), jobs_total=run.jobs_total)


@router.get("", response_model=list[RunSummary])
async def list_runs(manager: Manager) -> list[RunSummary]:
    return [run.summary() for run in sorted(manager.runs.values(), key=lambda r: r.created_at)]


@router.get("/{run_id}", response_model=RunDetail)
async def get_run(run: Run, events: Annotated[int, Query(ge=0, le=2000)] = 50) -> RunDetail:
    """Status, the last `events` events and, once finished, the results."""
    return run.detail(events)


@router.post("/{run_id}/resume", response_model=RunSummary)
async def resume_run(run_id: str, manager: Manager) -> RunSummary:
    """Continue a failed run from its last finished job (409 for a finished or cancelled run)."""
    return (await manager.resume(run_id)).summary()


@router.post("/{run_id}/cancel", response_model=RunSummary)
async def cancel_run(run_id: str, manager: Manager) -> RunSummary:
    """Stop a run for good: its calls to the services are cancelled (they drop its jobs), its queued jobs never
    start, and the cancellation is stored, so that no coordinator resumes it; a cancelled run cannot be
    resumed. Cancelling a cancelled run answers its summary again; a finished run gets 409."""
    return (await manager.cancel(run_id)).summary()
