"""What the coordinator's service calls did since it started, for `GET /metrics` (api/routes/metrics.py).

Plain counters on the run manager's `ServiceCalls`, read at scrape time: the calls know nothing of Prometheus.
"""

from __future__ import annotations

import contextlib
import functools
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

from seal_lab.logging import current_context

from ..run.jobs import JobName

Attempt = Callable[[int, str], Awaitable[Any]]
Call = TypeVar("Call", bound=Callable[..., Awaitable[Any]])


class CallStats:
    def __init__(self) -> None:
        #: Calls started and not finished (waiting for a slot or a retry, or in progress), by service.
        self.pending: Counter[str] = Counter()
        #: The same calls by the kind of job they are made for (jobs.py's step; "" outside a job: GetInfo).
        self.pending_jobs: Counter[str] = Counter()
        #: Failed attempts, by (service, status code).
        self.errors: Counter[tuple[str, str]] = Counter()
        #: Attempts after a failed one (a busy service or a store outage waited out included), by (service,
        #: the code of the failure it follows).
        self.retries: Counter[tuple[str, str]] = Counter()

    @contextlib.contextmanager
    def pending_call(self, service: str, job: str = "") -> Iterator[None]:
        kind = job_kind(job) if job else ""
        self.pending[service] += 1
        self.pending_jobs[kind] += 1
        try:
            yield
        finally:
            self.pending[service] -= 1
            self.pending_jobs[kind] -= 1

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


def job_kind(name: str) -> str:
    """A job's kind: its step (baseline, generate, train, evaluate, retention, policy, edit, control)."""
    try:
        return JobName.parse(name).step
    except ValueError:
        return "other"


def counted_call(method: Call) -> Call:
    """For `ServiceCalls.call(run, service, what, attempt_fn)`: the call is pending while it runs (by service,
    and by the kind of the job it is made for), and its attempts are counted in `self.stats`."""

    @functools.wraps(method)
    async def call(self: Any, run: Any, service: str, what: str, attempt_fn: Attempt) -> Any:
        stats: CallStats = self.stats
        with stats.pending_call(service, current_context().get("job_id", "")):  # experiment.py binds it
            return await method(self, run, service, what, stats.counted(service, attempt_fn))

    return call  # type: ignore[return-value]
