"""What the coordinator's service calls did since it started, for `GET /metrics` (routers/metrics.py).

Plain counters on the run manager's `ServiceCalls`, read at scrape time: the calls know nothing of Prometheus.
"""

from __future__ import annotations

import contextlib
import functools
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

Attempt = Callable[[int, str], Awaitable[Any]]
Call = TypeVar("Call", bound=Callable[..., Awaitable[Any]])


class CallStats:
    def __init__(self) -> None:
        #: Calls started and not finished (waiting for a slot or a retry, or in progress), by service.
        self.pending: Counter[str] = Counter()
        #: Failed attempts, by (service, status code).
        self.errors: Counter[tuple[str, str]] = Counter()
        #: Attempts after a failed one (a busy service or a store outage waited out included), by (service,
        #: the code of the failure it follows).
        self.retries: Counter[tuple[str, str]] = Counter()

    @contextlib.contextmanager
    def pending_call(self, service: str) -> Iterator[None]:
        self.pending[service] += 1
        try:
            yield
        finally:
            self.pending[service] -= 1

    def counted(self, service: str, attempt_fn: Attempt) -> Attempt:
        """`attempt_fn`, counting its failures and the attempts that follow one."""
        last_code = ""

        async def attempt(number: int, avoid: str) -> Any:
            nonlocal last_code
            if last_code:
                self.retries[(service, last_code)] += 1
            try:
                return await attempt_fn(number, avoid)
            except Exception as exc:
                code = getattr(exc, "code", None)
                last_code = getattr(code, "name", type(exc).__name__)
                self.errors[(service, last_code)] += 1
                raise

        return attempt


def counted_call(method: Call) -> Call:
    """For `ServiceCalls.call(run, service, what, attempt_fn)`: the call is pending while it runs, and its
    attempts are counted in `self.stats`."""

    @functools.wraps(method)
    async def call(self: Any, run: Any, service: str, what: str, attempt_fn: Attempt) -> Any:
        stats: CallStats = self.stats
        with stats.pending_call(service):
            return await method(self, run, service, what, stats.counted(service, attempt_fn))

    return call  # type: ignore[return-value]
