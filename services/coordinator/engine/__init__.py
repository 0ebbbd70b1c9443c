"""How a run executes: the run manager (create, schedule, resume, hand over), one run's experiment, the calls
to the generator, trainers and evaluator, the run's records, leases and budgets in the store. No HTTP server
and no command line here (tests/unit/test_architecture.py holds it).

What this module exports is the engine's public face: the API (api/) imports the engine only from here.
"""

from .budget import BudgetExhausted
from .callstats import job_kind
from .clients import ServiceClients
from .errors import RunCancelled, RunFinished, RunNotFound, RunRunning
from .index import FINISHED as FINISHED_STATUSES
from .manager import RunManager
from .state import RunState

__all__ = [
    "FINISHED_STATUSES",
    "BudgetExhausted",
    "RunCancelled",
    "RunFinished",
    "RunManager",
    "RunNotFound",
    "RunRunning",
    "RunState",
    "ServiceClients",
    "job_kind",
]
