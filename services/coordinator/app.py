"""The coordinator's HTTP API (FastAPI): the app, its lifespan and error mapping; routes live in `routers/`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.middleware.trustedhost import TrustedHostMiddleware

from seal_lab import __version__
from seal_lab.errors import SealError
from seal_lab.security import Security
from seal_lab.store import ObjectStore

from .clients import ServiceClients
from .limits import BodySizeLimit
from .routers import adapters, events, health, metrics, results, runs
from .routers.deps import require_token
from .runner import RunManager
from .settings import CoordinatorSettings


class ErrorDetail(BaseModel):
    """Every error response's body: one readable line (validation errors: one clause per problem)."""

    detail: str


#: Every 4xx of the API has that body: the handlers below, and FastAPI's own (400 for a body that is not
#: JSON). Declared as one range, it also replaces FastAPI's default 422 schema (a list of error objects, which
#: `_validation_error` does not send), so the OpenAPI document says what a refusal really holds
#: (tests/service/test_api_fuzz.py checks every response against it).
_ERROR_RESPONSES: dict[int | str, dict] = {
    "4XX": {"model": ErrorDetail, "description": "the request was refused; `detail` says why"}
}


async def _seal_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, SealError)
    return JSONResponse(status_code=exc.http_status, content={"detail": exc.message})


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    """One readable line per problem, without echoing back a possibly huge input."""
    assert isinstance(exc, RequestValidationError)
    problems = [f"{'.'.join(str(p) for p in error['loc'])}: {error['msg']}" for error in exc.errors()]
    return JSONResponse(status_code=422, content={"detail": "; ".join(problems)})


def create_app(
    settings: CoordinatorSettings, store: ObjectStore, security: Security | None = None
) -> FastAPI:
    """`security`: the token `/v1` requires and the coordinator sends to the services, and TLS to them
    (HTTPS itself is uvicorn's: `__main__.py`). None: open, plaintext (loopback only)."""
    security = security or Security()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        clients = ServiceClients(settings, security)
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
    app.state.token = security.token_value
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=settings.allowed_hosts)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    app.add_exception_handler(SealError, _seal_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.include_router(health.router)  # open: probes carry no token
    for router in (
        runs.router,
        results.router,
        events.router,
        adapters.router,
        metrics.router,
    ):  # the token, when set
        app.include_router(router, dependencies=[Depends(require_token)], responses=_ERROR_RESPONSES)
    return app
