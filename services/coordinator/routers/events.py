"""A run's progress as server-sent events (FastAPI's SSE: keep-alive comments while nothing happens)."""

from __future__ import annotations

from collections.abc import AsyncIterable

from fastapi import APIRouter
from fastapi.sse import EventSourceResponse, ServerSentEvent

from .deps import Run

router = APIRouter(prefix="/v1/runs/{run_id}", tags=["runs"])


@router.get("/events", response_class=EventSourceResponse)
async def stream_events(run: Run, after: int = -1) -> AsyncIterable[ServerSentEvent]:
    """Every event after `after`, then live ones (`event: run`), with a progress line per change
    (`event: summary`); the stream ends when the run has finished."""
    sent = after
    while True:
        changed = run.changed
        for event in run.events:
            if event.seq > sent:
                sent = event.seq
                yield ServerSentEvent(event="run", raw_data=event.model_dump_json())
        yield ServerSentEvent(event="summary", raw_data=run.summary().model_dump_json())
        if run.finished:
            return
        await changed.wait()
