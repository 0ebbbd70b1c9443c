"""`/healthz`: ready once the store answered and the run index was read."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from seal_lab import __version__

from ...run.schemas import Health
from ..deps import Manager

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health, responses={503: {"model": Health}})
async def healthz(manager: Manager) -> JSONResponse:
    """200 once the store answered and the run index was read (runs it lacked rebuilt from their records); 503 while waiting for the store."""
    if not manager.ready:
        waiting = Health(status="waiting for the object store", version=__version__)
        return JSONResponse(status_code=503, content=waiting.model_dump())
    return JSONResponse(Health(status="ok", version=__version__).model_dump())
