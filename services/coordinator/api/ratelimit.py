"""How fast one client may start work: a token bucket per client over the routes that start a run (create and
resume), 429 `rate_limited` with `Retry-After` beyond it.

A client is the bearer token when the coordinator has one: every holder of the shared SEAL_AUTH_TOKEN is then
one client (uvicorn does not pass a TLS client certificate to the app, so mutual TLS names no one finer).
Without a token (loopback only) it is the client's address. Each client's bucket holds up to `burst` starts
and refills at `rate` per second; a start takes one. The defaults (SEAL_COORDINATOR_RUN_START_BURST and
_RUN_START_RATE_PER_SECOND: 20, then 1 a second) leave a person, the CLI and the benchmarks, which start a
run or a few at a time, untouched, and stop a script that creates runs in a tight loop.

Hand-written (a few lines) rather than slowapi or limits: neither is a dependency, and the buckets need no
store shared between coordinators (each one limits what it is asked to start). In memory: a restart refills
them. The clock is injectable for tests.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import grpc
from fastapi import Request

from seal_lab.errors import SealError

#: Buckets kept before the full ones (clients idle long enough to refill) are dropped.
MAX_IDLE_BUCKETS = 1024


class RateLimited(SealError):
    """This client starts runs faster than the coordinator allows; `retry_after`: seconds until it may again."""

    grpc_code = grpc.StatusCode.RESOURCE_EXHAUSTED
    http_status = 429
    code = "rate_limited"

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after

    @property
    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


@dataclass
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    """Token buckets by client key: `take(key)` spends one token or raises RateLimited."""

    def __init__(self, burst: int, rate: float, clock: Callable[[], float] = time.monotonic) -> None:
        if burst < 1 or rate <= 0:
            raise ValueError("a rate limit needs burst >= 1 and rate > 0")
        self.burst = burst
        self.rate = rate
        self.clock = clock
        self._buckets: dict[str, _Bucket] = {}
        self._lock = threading.Lock()  # routes may run in a thread pool

    def _level(self, bucket: _Bucket, now: float) -> float:
        return min(self.burst, bucket.tokens + max(0.0, now - bucket.updated) * self.rate)

    def take(self, key: str) -> None:
        with self._lock:
            now = self.clock()
            if len(self._buckets) > MAX_IDLE_BUCKETS:
                self._drop_full(now)
            bucket = self._buckets.setdefault(key, _Bucket(float(self.burst), now))
            bucket.tokens, bucket.updated = self._level(bucket, now), now
            if bucket.tokens >= 1.0:
                bucket.tokens -= 1.0
                return
            wait = math.ceil((1.0 - bucket.tokens) / self.rate)
        raise RateLimited(
            f"too many runs started (created or resumed): this coordinator takes {self.burst} at once and "
            f"{self.rate:g} a second from one client (SEAL_COORDINATOR_RUN_START_BURST, "
            f"_RUN_START_RATE_PER_SECOND); try again in {wait} s",
            max(1, wait),
        )

    def _drop_full(self, now: float) -> None:
        """A full bucket is the same as none: forget the clients that have been idle that long."""
        for key in [k for k, b in self._buckets.items() if self._level(b, now) >= self.burst]:
            del self._buckets[key]


def client_key(request: Request) -> str:
    """Who the request comes from, for its bucket (after `require_token`: a request here holds the token)."""
    if request.app.state.token is not None:
        return "token"
    return f"address:{request.client.host if request.client else 'unknown'}"


async def limit_run_starts(request: Request) -> None:
    """Dependency of the routes that start a run: one token from the caller's bucket, or 429."""
    request.app.state.run_limiter.take(client_key(request))
