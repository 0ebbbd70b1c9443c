"""A bound on the calls a service has admitted and not yet answered: the calls in progress and the calls
queued behind them for the model.

Beyond the bound a call is refused at once with RESOURCE_EXHAUSTED and trailing metadata
`(CAUSE_KEY, BUSY_CAUSE)`, so a caller can tell "busy, try again later" from a request that is too big.
Without a bound every waiting call holds its request (a dataset, a question set) in memory for as long as
the calls before it take. Each servicer owns one gate per kind of model work; the counter lives on the
event loop, so no lock is needed.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator

import grpc

from seal_lab.rpc.wire import BUSY_CAUSE, CAUSE_KEY

log = logging.getLogger(__name__)


class CallGate:
    def __init__(self, limit: int, what: str, setting: str) -> None:
        if limit < 1:
            raise ValueError(f"{setting} must be at least 1")
        self.limit = limit
        #: What is admitted, for the refusal ("training jobs"); the setting that raises the bound.
        self.what = what
        self.setting = setting
        #: Calls admitted and not yet answered (in progress or waiting for the model).
        self.admitted = 0
        #: Calls refused because the gate was full (since the process started).
        self.refused = 0

    @contextlib.asynccontextmanager
    async def admit(self, context: grpc.aio.ServicerContext) -> AsyncIterator[None]:
        """Hold one place for the body of a call; abort the call with RESOURCE_EXHAUSTED if none is free."""
        if self.admitted >= self.limit:
            self.refused += 1
            log.warning("busy: refused a call, %d %s admitted already", self.admitted, self.what)
            await context.abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"busy: {self.admitted} {self.what} in progress or queued, the limit ({self.setting}) is "
                f"{self.limit}; try again later",
                ((CAUSE_KEY, BUSY_CAUSE),),
            )
        self.admitted += 1
        try:
            yield
        finally:
            self.admitted -= 1
