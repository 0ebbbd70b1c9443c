"""What the routes depend on: the run manager of this app, and a run looked up by its id (404 if unknown)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from ..runner import RunManager
from ..state import RunState


def get_manager(request: Request) -> RunManager:
    return request.app.state.manager


Manager = Annotated[RunManager, Depends(get_manager)]


def get_run(run_id: str, manager: Manager) -> RunState:
    """The run, or a 404 before any response starts (the event stream relies on it)."""
    return manager.get(run_id)


Run = Annotated[RunState, Depends(get_run)]
