"""The errors the engine raises about a run's lifecycle, each with its machine-readable code.

They are domain errors (`seal_lab.errors`): their base class gives the status, which the API maps to HTTP
(api/errors.py) and nothing here knows about.
"""

from __future__ import annotations

from seal_lab.errors import FailedPrecondition, NotFound


class RunNotFound(NotFound):
    code = "run_not_found"


class RunRunning(FailedPrecondition):
    """The run is queued, running or paused (here or on another coordinator): cancel it first."""

    code = "run_running"


class RunFinished(FailedPrecondition):
    code = "run_finished"


class RunCancelled(FailedPrecondition):
    code = "run_cancelled"
