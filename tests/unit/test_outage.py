"""Waiting out store outages: jittered backoff, only StoreUnavailable is retried, the bound is kept."""

from __future__ import annotations

import asyncio
import random
import time

import pytest

from seal_lab.errors import InvalidArgument, StoreFull, StoreUnavailable
from seal_lab.store import outage
from seal_lab.store.outage import OutagePolicy, call_async, call_sync


def test_delays_grow_to_the_cap_with_jitter_in_the_upper_half():
    policy = OutagePolicy(max_seconds=60, initial_backoff_seconds=1.0, max_backoff_seconds=8.0)
    delays = [d for d, _ in zip(policy.delays(random.Random(0)), range(8), strict=False)]
    steps = [1, 2, 4, 8, 8, 8, 8, 8]
    assert all(step / 2 <= d <= step for d, step in zip(delays, steps, strict=True))
    assert len(set(delays)) == len(delays)  # jittered: no two waits alike


def test_a_store_outage_is_waited_out_and_reported_each_time():
    calls, retries = [], []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise StoreFull("the local store is full")
        return "stored"

    policy = OutagePolicy(max_seconds=5, initial_backoff_seconds=0.01, max_backoff_seconds=0.02)
    result = call_sync(
        flaky, policy, "a write", lambda error, delay, attempt: retries.append((error.message, attempt))
    )
    assert result == "stored" and len(calls) == 3
    assert retries == [("the local store is full", 1), ("the local store is full", 2)]


def test_the_last_error_is_raised_once_the_bound_has_passed():
    def down() -> None:
        raise StoreUnavailable("cannot write 'k': connection refused")

    started = time.monotonic()
    with pytest.raises(StoreUnavailable, match="connection refused"):
        call_sync(
            down, OutagePolicy(max_seconds=0.3, initial_backoff_seconds=0.05, max_backoff_seconds=0.1), "w"
        )
    assert time.monotonic() - started < 0.6


def test_other_errors_are_not_retried():
    calls = []

    def refused() -> None:
        calls.append(1)
        raise InvalidArgument("bad key")

    with pytest.raises(InvalidArgument):
        asyncio.run(call_async(refused, OutagePolicy(max_seconds=10), "a read"))
    assert calls == [1]


def test_async_calls_run_off_the_event_loop():
    """A store call that hangs must not stop the loop (health checks, other runs)."""

    async def main() -> int:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        task = asyncio.create_task(ticker())
        await call_async(lambda: time.sleep(0.3), OutagePolicy(max_seconds=0), "a slow read")
        task.cancel()
        return ticks

    assert asyncio.run(main()) >= 10


def test_telling_says_what_a_call_waits_for_at_each_retry(monkeypatch):
    """The trainer's save while its store is away: each retry tells its callers (TrainProgress.waiting_for)."""
    monkeypatch.setattr(outage.time, "sleep", lambda seconds: None)
    told: list[str] = []
    failures = iter([StoreFull("bucket quota exceeded"), StoreFull("bucket quota exceeded")])

    def save() -> str:
        error = next(failures, None)
        if error is not None:
            raise error
        return "saved"

    policy = OutagePolicy(max_seconds=60, initial_backoff_seconds=0.0, max_backoff_seconds=0.0)
    assert (
        outage.call_sync(save, policy, "saving", outage.telling("saving the adapter", told.append)) == "saved"
    )
    assert told == [
        "the store: bucket quota exceeded (saving the adapter; retry 1 in 0s)",
        "the store: bucket quota exceeded (saving the adapter; retry 2 in 0s)",
    ]
