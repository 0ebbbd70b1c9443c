"""The coordinator's HTTP API (FastAPI): start runs, read them, follow their progress."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, StreamingResponse

from seal_lab import __version__
from seal_lab.errors import FailedPrecondition, SealError
from seal_lab.store import ObjectStore

from .clients import ServiceClients
from .report import render_report
from .runner import RunManager
from .schemas import RunCreate, RunCreated, RunDetail, RunSummary
from .settings import CoordinatorSettings


def get_manager(request: Request) -> RunManager:
    return request.app.state.manager


Manager = Annotated[RunManager, Depends(get_manager)]


def create_app(settings: CoordinatorSettings, store: ObjectStore) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        clients = ServiceClients(settings)
        manager = RunManager(store, clients, settings)
        app.state.manager = manager
        await manager.start()
        try:
            yield
        finally:
            await manager.shutdown()
            await clients.close()

    app = FastAPI(
        title="seal-lab coordinator",
        version=__version__,
        description="Runs SEAL's inner loop over the generator, trainer and evaluator services.",
        lifespan=lifespan,
    )

    @app.exception_handler(SealError)
    async def _seal_error(request: Request, exc: SealError) -> JSONResponse:
        return JSONResponse(status_code=exc.http_status, content={"detail": exc.message})

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        # One readable line per problem, without echoing back a possibly huge input.
        problems = [f"{'.'.join(str(p) for p in error['loc'])}: {error['msg']}" for error in exc.errors()]
        return JSONResponse(status_code=422, content={"detail": "; ".join(problems)})

    @app.get("/healthz", tags=["health"])
    async def healthz(manager: Manager) -> JSONResponse:
        """200 once the store answered and every recorded run was loaded; 503 while waiting for the store."""
        if not manager.ready:
            return JSONResponse(
                status_code=503, content={"status": "waiting for the object store", "version": __version__}
            )
        return JSONResponse({"status": "ok", "version": __version__})

    @app.post("/v1/runs", status_code=202, response_model=RunCreated, tags=["runs"])
    async def create_run(body: RunCreate, manager: Manager) -> RunCreated:
        """Start a round of the inner loop on a dataset (inline SEAL-format passages or `demo`)."""
        run = await manager.create(body)
        return RunCreated(id=run.id, status=run.status, passages=len(run.passages), jobs_total=run.jobs_total)

    @app.get("/v1/runs", response_model=list[RunSummary], tags=["runs"])
    async def list_runs(manager: Manager) -> list[RunSummary]:
        return [run.summary() for run in sorted(manager.runs.values(), key=lambda r: r.created_at)]

    @app.get("/v1/runs/{run_id}", response_model=RunDetail, tags=["runs"])
    async def get_run(
        run_id: str, manager: Manager, events: Annotated[int, Query(ge=0, le=2000)] = 50
    ) -> RunDetail:
        """Status, the last `events` events and, once finished, the results."""
        return manager.get(run_id).detail(events)

    @app.post("/v1/runs/{run_id}/resume", response_model=RunSummary, tags=["runs"])
    async def resume_run(run_id: str, manager: Manager) -> RunSummary:
        """Continue a failed run from its last finished job."""
        return (await manager.resume(run_id)).summary()

    @app.get("/v1/runs/{run_id}/results", tags=["results"])
    async def get_results(run_id: str, manager: Manager) -> dict[str, Any]:
        """Everything the report shows, as JSON: rounds, held-out conditions with error bars, what worked,
        forgetting, examples and the reproducibility record."""
        run = manager.get(run_id)
        if run.results is None:
            raise FailedPrecondition(f"run {run_id} has no results yet (status {run.status})")
        return run.results

    @app.get("/v1/runs/{run_id}/report", response_class=HTMLResponse, tags=["results"])
    async def get_report(run_id: str, manager: Manager) -> HTMLResponse:
        """A self-contained HTML page with plots, SEAL's conditions table and example self-edits."""
        run = manager.get(run_id)
        page = render_report(
            {
                "id": run.id,
                "name": run.name,
                "status": run.status,
                "services": run.services,
                "results": run.results,
            }
        )
        return HTMLResponse(page)

    @app.get("/v1/runs/{run_id}/events", tags=["runs"])
    async def stream_events(run_id: str, manager: Manager, after: int = -1) -> StreamingResponse:
        """Server-sent events: every event after `after`, then live ones, with a progress line per change."""
        run = manager.get(run_id)

        async def events() -> AsyncIterator[str]:
            sent = after
            while True:
                changed = run.changed
                for event in run.events:
                    if event.seq > sent:
                        sent = event.seq
                        yield f"event: run\ndata: {event.model_dump_json()}\n\n"
                yield f"event: summary\ndata: {json.dumps(run.summary().model_dump())}\n\n"
                if run.finished:
                    return
                # On timeout the summary above doubles as a keep-alive.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(changed.wait(), timeout=15)

        return StreamingResponse(events(), media_type="text/event-stream")

    return app
