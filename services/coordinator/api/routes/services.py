"""`GET /v1/services`: the services the coordinator sees now, each asked GetInfo at once with a short deadline:
a service that is down shows as unreachable with the reason, and the others are still listed."""

from __future__ import annotations

from fastapi import APIRouter

from ...run.services import ServicesStatus
from ..deps import Manager

router = APIRouter(prefix="/v1/services", tags=["services"])


@router.get("", response_model=ServicesStatus)
async def list_services(manager: Manager) -> ServicesStatus:
    """The generator, the evaluator and every trainer in the pool: address, whether it answered GetInfo
    (else the status and its one-line reason), its model, dtype and capacity, and the calls under way to it."""
    return await manager.services()
