"""The coordinator's HTTP API (FastAPI): the app, its lifespan and error mapping; routes live in `routes/`."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI

from seal_lab import __version__
from seal_lab.security import Security
from seal_lab.store import ObjectStore

from ..engine import RunManager, ServiceClients
from ..settings import CoordinatorSettings, MlflowSettings
from .bodylimit import BodySizeLimit
from .deps import require_token
from .errors import HANDLERS, ApiError, HostCheck
from .ratelimit import RateLimiter
from .routes import adapters, docs, events, health, metrics, results, runs, services
from .tracking import tracking
from .ui import install as install_ui
from .ui.auth import FormRefused, SignInNeeded, form_refused, sign_in_page
from .ui.client import api_for

#: Every 4xx/5xx of the API has that body (errors.py). Declared as ranges, it also replaces FastAPI's default
#: 422 schema (a list of error objects without `code`), so the OpenAPI document says what a refusal really holds
#: (tests/service/test_api_fuzz.py checks every response against it).
_ERROR_RESPONSES: dict[int | str, dict] = {
    "4XX": {"model": ApiError, "description": "the request was refused; `code` and `message` say why"},
    "5XX": {"model": ApiError, "description": "the coordinator or its store could not serve the request"},
}


def internal_host(allowed_hosts: list[str]) -> str:
    """A Host the app's host check lets in, for its own in-process calls (MLflow tracking)."""
    for host in allowed_hosts:
        if "*" not in host:
            return host
    first = allowed_hosts[0]
    return "localhost" if first == "*" else first.replace("*.", "coordinator.", 1)


def track_runs(
    app: FastAPI, settings: CoordinatorSettings, security: Security, mlflow: MlflowSettings
) -> Any:
    """MLflow tracking over this app's own API (tracking.py), as a context the lifespan enters."""
    host = internal_host(settings.allowed_hosts)
    return tracking(
        lambda: api_for(app, security.token_value, host),
        mlflow.tracking_uri,
        mlflow.experiment,
        mlflow.poll_seconds,
        mlflow.max_backoff_seconds,
        mlflow.git_commit,
    )


def create_app(
    settings: CoordinatorSettings,
    store: ObjectStore,
    security: Security | None = None,
    clock: Callable[[], float] = time.monotonic,
    mlflow: MlflowSettings | None = None,
) -> FastAPI:
    """`security`: the token `/v1` requires and the coordinator sends to the services, and TLS to them
    (HTTPS itself is uvicorn's: `__main__.py`). None: open, plaintext (loopback only). `clock`: the run-start
    rate limit's (tests move it). `mlflow`: with a tracking URI, every run is tracked there (tracking.py)."""
    security = security or Security()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        clients = ServiceClients(settings, security)
        manager = RunManager(store, clients, settings)
        app.state.manager = manager
        await manager.start()
        try:
            async with AsyncExitStack() as stack:
                if mlflow is not None and mlflow.tracking_uri:
                    await stack.enter_async_context(track_runs(app, settings, security, mlflow))
                yield
        finally:
            await manager.shutdown()
            await clients.close()

    app = FastAPI(
        title="seal-lab coordinator",
        version=__version__,
        description="Runs SEAL's inner loop over the generator, trainer and evaluator services.",
        lifespan=lifespan,
        # Served by routes/docs.py instead, where the token can guard them.
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
    )
    app.state.token = security.token_value
    app.state.run_limiter = RateLimiter(settings.run_start_burst, settings.run_start_rate_per_second, clock)
    app.add_middleware(HostCheck, allowed_hosts=settings.allowed_hosts)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    for kind, handler in HANDLERS.items():
        app.add_exception_handler(kind, handler)
    app.add_exception_handler(SignInNeeded, sign_in_page)
    app.add_exception_handler(FormRefused, form_refused)
    app.include_router(health.router)  # open: probes carry no token
    # The description holds no data, but it maps every route for whoever reaches the port: behind the token
    # (when there is one) unless opened on purpose.
    app.include_router(docs.router, dependencies=[] if settings.public_docs else [Depends(require_token)])
    for router in (
        runs.router,
        results.router,
        events.router,
        adapters.router,
        services.router,
        metrics.router,
    ):  # the token, when set
        app.include_router(router, dependencies=[Depends(require_token)], responses=_ERROR_RESPONSES)
    # The web UI (/ui): its own sign-in (a form, a session cookie), over the routes above.
    secret = settings.ui_session_secret.get_secret_value() if settings.ui_session_secret else None
    install_ui(app, secret, security.token_value, https=security.tls is not None and security.tls.serves)
    return app
