"""A run's events (in memory and on its stream; stored when they must survive a restart) and its own record
writes, which pause the run, with an event per retry, while the store is away."""

from __future__ import annotations

import logging
import time
from typing import Any

from pydantic import BaseModel

from seal.v1 import trainer_pb2
from seal_lab.errors import StoreUnavailable
from seal_lab.store.outage import OnRetry

from ..run.schemas import RunEvent
from .records import RecordWriter, run_key
from .state import RunState

log = logging.getLogger(__name__)

MAX_EVENTS_IN_MEMORY = 2000


def sparse(attempt: int) -> bool:
    """Store the 1st, 2nd, 4th, 8th... retry of one outage: a day-long outage leaves a dozen records, not
    thousands (every retry is still an event in memory and on the stream)."""
    return attempt & (attempt - 1) == 0


class EventLog:
    def __init__(self, writer: RecordWriter) -> None:
        self.writer = writer

    def emit(
        self,
        run: RunState,
        kind: str,
        message: str,
        passage_id: str = "",
        job: str = "",
        data: dict[str, Any] | None = None,
        persist: bool | None = None,
    ) -> None:
        """Record an event; `persist` None: retries and errors are stored (they survive a restart)."""
        event = RunEvent(
            seq=len(run.events),
            ts=time.time(),
            kind=kind,
            message=message,
            passage_id=passage_id,
            job=job,
            data=data or {},
        )
        run.events.append(event)
        if len(run.events) > MAX_EVENTS_IN_MEMORY:
            del run.events[: len(run.events) - MAX_EVENTS_IN_MEMORY]
        run.updated_at = event.ts
        run.retries += kind == "retry"
        if persist is None:
            persist = kind in ("retry", "error")
        if persist:  # failures survive a coordinator restart; written in order, waiting out store outages
            stamp = f"{time.time_ns():020d}"
            self.writer.queue_event(run_key(run.id, f"events/{stamp}.json"), event)
        log.log(logging.WARNING if kind in ("retry", "error") else logging.INFO, "%s", message)
        run.notify()

    def store_retry(self, run: RunState, what: str) -> OnRetry:
        """on_retry for the run's own store calls: the run shows as paused, with an event per retry."""

        def on_retry(error: StoreUnavailable, delay: float, attempt: int) -> None:
            run.pause(f"paused: store unavailable during {what}; retry in {delay:.0f}s")
            self.emit(
                run,
                "retry",
                f"store unavailable during {what} ({error.message}); retry {attempt} in {delay:.0f}s",
                data={"service": "store", "code": type(error).__name__},
                persist=sparse(attempt),
            )

        return on_retry

    def train_progress(
        self,
        run: RunState,
        what: str,
        address: str,
        progress: trainer_pb2.TrainProgress,
        waits: int,
        stage: str = "",
    ) -> None:
        """A training's progress in the run's `current` line, with where in the run it is: `stage` (a continual
        run's `ordering 2, step 5/8`), else the round. A trainer that holds its trained job back (its
        store is away: the adapter waits in its memory) says so in `waiting_for`, at each of its retries: the
        run shows as paused, saying for what, with an event per notice (stored sparsely, as the store's
        retries); `waits` counts them in this call. A paused run keeps its pause's reason as its line: a
        training that goes on meanwhile does not replace it."""
        if not progress.waiting_for:
            if run.status == "paused":  # the pause's reason stays the run's line until it runs again
                return
            run.current = (
                f"training {what} on {address}: step {progress.step}/{progress.total_steps} "
                f"loss {progress.loss:.3f} ({stage or f'round {run.round}'})"
            )
            run.notify()
            return
        # running again once the call returns (ServiceCalls.call)
        run.pause(
            f"paused: training {what} on {address} (step {progress.step}/{progress.total_steps}) is waiting "
            f"for {progress.waiting_for}"
        )
        self.emit(
            run,
            "retry",
            f"training {what}: trainer at {address} is waiting for {progress.waiting_for}",
            data={
                "service": "store",
                "via": "trainer",
                "address": address,
                "waiting_for": progress.waiting_for,
            },
            persist=sparse(waits),
        )

    async def persist(self, run: RunState, key: str, record: BaseModel, what: str) -> None:
        """Write one of the run's records write-once, waiting out store outages."""
        await self.writer.put(key, record, self.store_retry(run, what))
        run.unpause()
