"""Gathers concurrent training jobs into groups for the model worker.

A job that arrives waits at most `window_seconds` for companions (or until the group is full); while a group
trains, new arrivals queue and form the next group as soon as the worker is free. A group's function returns
one result or exception per job, so one bad job fails only its own call.

A job whose caller is cancelled while it waits leaves the queue and never trains; once its group has started,
stopping it is the group function's business (the trainer's jobs carry a cancel flag checked at every step).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

log = logging.getLogger(__name__)

Job = TypeVar("Job")


@dataclass
class _Waiting(Generic[Job]):
    job: Job
    future: asyncio.Future
    arrived: float = field(default_factory=time.monotonic)


class GroupBatcher(Generic[Job]):
    def __init__(
        self,
        run_group: Callable[[list[Job]], Awaitable[list[Any]]],
        max_group_size: int,
        window_seconds: float,
    ) -> None:
        if max_group_size < 1:
            raise ValueError("max_group_size must be at least 1")
        self._run_group = run_group
        self.max_group_size = max_group_size
        self.window_seconds = window_seconds
        self._waiting: list[_Waiting[Job]] = []
        self._arrived = asyncio.Event()
        self._task: asyncio.Task | None = None

    async def submit(self, job: Job) -> Any:
        """The job's result once its group has trained (raises the job's own exception)."""
        waiting = _Waiting(job, asyncio.get_running_loop().create_future())
        self._waiting.append(waiting)
        self._arrived.set()
        if self._task is None or self._task.done():  # the loop ends whenever the queue is empty
            self._task = asyncio.create_task(self._loop(), name="train-groups")
        try:
            # Shielded: cancelling the caller must not cancel a group that other jobs train in.
            return await asyncio.shield(waiting.future)
        except asyncio.CancelledError:
            with contextlib.suppress(ValueError):  # still queued: it never trains
                self._waiting.remove(waiting)
            waiting.future.cancel()  # nobody reads its result now
            raise

    async def _loop(self) -> None:
        while self._waiting:
            deadline = self._waiting[0].arrived + self.window_seconds
            while len(self._waiting) < self.max_group_size:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._arrived.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._arrived.wait(), remaining)
            group = self._waiting[: self.max_group_size]
            if not group:  # every job that waited was cancelled
                break
            del self._waiting[: len(group)]
            if not self._waiting:
                self._arrived.clear()
            try:
                results = await self._run_group([w.job for w in group])
            except Exception as exc:  # the whole group failed (a bug, out of memory): every job reports it
                log.exception("a training group of %d failed", len(group))
                results = [exc] * len(group)
            for waiting, result in zip(group, results, strict=True):
                if waiting.future.done():
                    continue
                if isinstance(result, BaseException):
                    waiting.future.set_exception(result)
                else:
                    waiting.future.set_result(result)
