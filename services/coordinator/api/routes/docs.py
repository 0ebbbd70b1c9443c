"""The API's description: `/openapi.json`, and the pages that render it (`/docs`, `/redoc`). FastAPI's own
routes for them take no dependencies, so the app turns them off and serves them here, behind the token
unless SEAL_COORDINATOR_PUBLIC_DOCS opens them (app.py decides)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse, JSONResponse

OPENAPI_URL = "/openapi.json"
DOCS_URL = "/docs"
REDOC_URL = "/redoc"

router = APIRouter(include_in_schema=False)


def _openapi_url(request: Request) -> str:
    """Behind a proxy that mounts the API under a prefix (uvicorn's `root_path`), the page fetches it there."""
    return request.scope.get("root_path", "").rstrip("/") + OPENAPI_URL


@router.get(OPENAPI_URL)
async def openapi(request: Request) -> JSONResponse:
    schema: dict[str, Any] = request.app.openapi()
    return JSONResponse(schema)


@router.get(DOCS_URL)
async def swagger_ui(request: Request) -> HTMLResponse:
    return get_swagger_ui_html(
        openapi_url=_openapi_url(request),
        title=f"{request.app.title} - Swagger UI",
        oauth2_redirect_url=request.scope.get("root_path", "").rstrip("/") + f"{DOCS_URL}/oauth2-redirect",
    )


@router.get(f"{DOCS_URL}/oauth2-redirect")
async def swagger_ui_redirect() -> HTMLResponse:
    return get_swagger_ui_oauth2_redirect_html()


@router.get(REDOC_URL)
async def redoc(request: Request) -> HTMLResponse:
    return get_redoc_html(openapi_url=_openapi_url(request), title=f"{request.app.title} - ReDoc")
