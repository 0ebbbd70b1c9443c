"""Waiting out object-store outages: retry with capped, jittered exponential backoff.

Every store call is bounded on its own (connect and read timeouts, a few quick retries; see StoreSettings).
What this module adds is the wait *between* such calls while the store is down or full: a service keeps a
finished training in memory and writes it once the store is back, and the coordinator pauses a run instead
of failing it. Only `StoreUnavailable` (down, timed out, full) is waited out; every other error is raised
at once. When `max_seconds` has passed the last `StoreUnavailable` is raised.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

from seal_lab.errors import StoreUnavailable

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Called before each wait with the error, the seconds about to be waited, and the attempt number (1-based).
OnRetry = Callable[[StoreUnavailable, float, int], None]


@dataclass(frozen=True)
class OutagePolicy:
    """How long to keep trying. `max_seconds=0` tries once; `math.inf` waits for as long as it takes."""

    max_seconds: float
    initial_backoff_seconds: float = 0.5
    max_backoff_seconds: float = 15.0

    def delays(self, rng: random.Random | None = None) -> Iterator[float]:
        """Equal jitter: half the capped exponential step, plus a random part of the other half."""
        rng = rng or random.Random()
        step = self.initial_backoff_seconds
        while True:
            capped = min(self.max_backoff_seconds, step)
            yield capped / 2 + rng.uniform(0, capped / 2)
            step *= 2


ONCE = OutagePolicy(max_seconds=0)


def _default_on_retry(what: str) -> OnRetry:
    def on_retry(error: StoreUnavailable, delay: float, attempt: int) -> None:
        log.warning(
            "store unavailable during %s (%s); retry %d in %.1fs", what, error.message, attempt, delay
        )

    return on_retry


def telling(what: str, tell: Callable[[str], None]) -> OnRetry:
    """on_retry that logs as the default one and tells someone (a caller waiting on the work) for what it
    waits: `the store: <why> (<what>; retry <n> in <s>s)`."""

    def on_retry(error: StoreUnavailable, delay: float, attempt: int) -> None:
        _default_on_retry(what)(error, delay, attempt)
        tell(f"the store: {error.message} ({what}; retry {attempt} in {delay:.0f}s)")

    return on_retry


def call_sync(fn: Callable[[], T], policy: OutagePolicy, what: str, on_retry: OnRetry | None = None) -> T:
    """Blocking: for worker threads (a trainer keeping its finished adapter until the store takes it)."""
    on_retry = on_retry or _default_on_retry(what)
    deadline = time.monotonic() + policy.max_seconds
    for attempt, delay in enumerate(policy.delays(), start=1):
        try:
            return fn()
        except StoreUnavailable as error:
            if time.monotonic() + delay > deadline:
                raise
            on_retry(error, delay, attempt)
            time.sleep(delay)
    raise AssertionError("unreachable")


async def call_async(
    fn: Callable[[], T], policy: OutagePolicy, what: str, on_retry: OnRetry | None = None
) -> T:
    """From an event loop: each try runs in a thread, so a hanging store never blocks health checks."""
    on_retry = on_retry or _default_on_retry(what)
    deadline = time.monotonic() + policy.max_seconds
    for attempt, delay in enumerate(policy.delays(), start=1):
        try:
            return await asyncio.to_thread(fn)
        except StoreUnavailable as error:
            if time.monotonic() + delay > deadline:
                raise
            on_retry(error, delay, attempt)
            await asyncio.sleep(delay)
    raise AssertionError("unreachable")


async def wait_for_store(check: Callable[[], None], what: str, max_backoff_seconds: float = 10.0) -> None:
    """Start-up: poll `check` (the store's liveness probe) until it passes; health stays NOT_SERVING meanwhile."""
    policy = OutagePolicy(
        max_seconds=math.inf, initial_backoff_seconds=0.5, max_backoff_seconds=max_backoff_seconds
    )

    def on_retry(error: StoreUnavailable, delay: float, attempt: int) -> None:
        log.warning(
            "%s: waiting for the store (%s); try %d again in %.1fs", what, error.message, attempt, delay
        )

    await call_async(check, policy, what, on_retry)
    log.info("%s: store reachable", what)
