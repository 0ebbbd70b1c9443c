"""What the routes depend on: the caller's token, the run manager of this app, and a run looked up by its id
(404 if unknown)."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from ..engine import RunManager, RunState
from .session import SAFE_METHODS, signed_in

_bearer = HTTPBearer(
    auto_error=False,
    description="The shared SEAL_AUTH_TOKEN; required on /v1 when the coordinator has one.",
)
MISSING_TOKEN = "this API needs the shared token: send 'Authorization: Bearer <SEAL_AUTH_TOKEN>'"
WRONG_TOKEN = "wrong bearer token: the coordinator has another SEAL_AUTH_TOKEN"


def require_token(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> None:
    """401 (with `WWW-Authenticate: Bearer`) unless the request carries the coordinator's token; open when
    it has none (then it listens on loopback only: `refuse_unsafe_start`). A read (GET, HEAD) may instead
    carry the web UI's signed session cookie (session.py): the browser's event stream and downloads."""
    expected: str | None = request.app.state.token
    if expected is None:
        return
    if credentials is None:
        if request.method in SAFE_METHODS and signed_in(request, expected):
            return
        raise HTTPException(401, MISSING_TOKEN, headers={"WWW-Authenticate": "Bearer"})
    # compare_digest takes the same time wherever the first difference is (bytes: any characters).
    if not hmac.compare_digest(credentials.credentials.encode(), expected.encode()):
        raise HTTPException(401, WRONG_TOKEN, headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})


def get_manager(request: Request) -> RunManager:
    return request.app.state.manager


Manager = Annotated[RunManager, Depends(get_manager)]


async def get_run(run_id: str, manager: Manager) -> RunState:
    """The run (a finished one read from the store when not in memory), or a 404 before any response starts
    (the event stream relies on it)."""
    return await manager.find(run_id)


Run = Annotated[RunState, Depends(get_run)]
