"""The web UI at `/ui`: server-rendered pages (Jinja2, htmx) over the coordinator's public HTTP API.

The pages read and change runs only through `/v1` (client.py calls the app in process, as any HTTP client
would); nothing here imports the engine (tests/unit/test_architecture.py holds it). Sign-in: auth.py.
"""

from __future__ import annotations

from fastapi import FastAPI
from starlette.middleware.sessions import SessionMiddleware
from starlette.staticfiles import StaticFiles

from ..session import COOKIE, MAX_AGE_SECONDS, session_secret
from . import auth, pages

PREFIX = "/ui"


def install(app: FastAPI, configured_secret: str | None, token: str | None, https: bool = False) -> None:
    """Serve the UI on `app`: its pages, its static files (vendored htmx, the CSS) and the session cookie
    (`https`: sent over HTTPS only, when the coordinator serves HTTPS)."""
    app.add_middleware(
        SessionMiddleware,
        secret_key=session_secret(configured_secret, token),
        session_cookie=COOKIE,
        max_age=MAX_AGE_SECONDS,
        same_site="lax",
        https_only=https,
    )
    app.mount(
        f"{PREFIX}/static", StaticFiles(packages=[("services.coordinator.api.ui", "static")]), "ui-static"
    )
    app.include_router(auth.router)
    app.include_router(pages.router)
