"""A run's progress as server-sent events (FastAPI's SSE: keep-alive comments while nothing happens)."""

from __future__ import annotations

from collections.abc import AsyncIterable
from typing import Annotated

from fastapi import APIRouter, Header, Query
from fastapi.sse import EventSourceResponse, ServerSentEvent

from ..deps import Run
from ..errors import responses

router = APIRouter(prefix="/v1/runs/{run_id}", tags=["runs"])


@router.get("/events", response_class=EventSourceResponse, responses=responses(404))
async def stream_events(
    run: Run,
    last_event_id: Annotated[
        int | None, Header(ge=-1, description="the last `id:` received: resume after it (the SSE standard)")
    ] = None,
    after: Annotated[int, Query(ge=-1, description="the same as Last-Event-ID (which wins when sent)")] = -1,
) -> AsyncIterable[ServerSentEvent]:
    """Every event after the last one received, then live ones (`event: run`, `id:` its `seq`), with a
    progress line per change (`event: summary`, no id); the stream ends when the run has finished."""
    sent = after if last_event_id is None else last_event_id
    while True:
        changed = run.changed
        for event in run.events:
            if event.seq > sent:
                sent = event.seq
                yield ServerSentEvent(event="run", id=str(event.seq), raw_data=event.model_dump_json())
        yield ServerSentEvent(event="summary", raw_data=run.summary().model_dump_json())
        if run.finished:
            return
        await changed.wait()
