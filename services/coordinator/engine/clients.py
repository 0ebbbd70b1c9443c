"""gRPC clients of the generator, the trainers and the evaluator, with a pool that spreads training jobs."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import grpc

from seal.v1 import common_pb2, evaluator_pb2_grpc, generator_pb2_grpc, trainer_pb2_grpc
from seal_lab.rpc.client import is_store_outage, open_channel
from seal_lab.security import Security

from ..settings import CoordinatorSettings, DnsTarget, parse_target
from .discovery import Resolver, system_resolver

log = logging.getLogger(__name__)


@dataclass
class TrainerEndpoint:
    address: str
    channel: grpc.aio.Channel
    stub: trainer_pb2_grpc.TrainerStub
    # Jobs this trainer takes at once: its GetInfo `max_group_size` (it trains that many together).
    capacity: int = 1
    in_flight: int = 0
    #: When (time.monotonic()) a call to it last failed for want of the trainer; None once one succeeds.
    failed_at: float | None = None

    @property
    def load(self) -> float:
        return self.in_flight / self.capacity


def connect_trainer(address: str, server_name: str = "", security: Security | None = None) -> TrainerEndpoint:
    """`server_name`: the DNS name `address` was found under, which its TLS certificate names."""
    channel = open_channel(address, security, server_name=server_name)
    return TrainerEndpoint(address, channel, trainer_pb2_grpc.TrainerStub(channel))


#: `connect(address)` for a listed trainer, `connect(address, server_name)` for one found by DNS.
Connect = Callable[..., TrainerEndpoint]


class TrainerPool:
    """Hands each training job to a trainer with a free slot: up to `capacity` jobs in flight per trainer.

    A trainer that groups concurrent Train calls (`max_group_size` > 1) only fills a group when that many
    calls are open at once, so the pool keeps that many in flight; a trainer that trains one job at a time
    gets one. Slots are counted on the endpoint, not in a semaphore, so a capacity that changes while jobs
    run (a trainer restarted with another group size) neither loses nor double-counts them: a smaller
    capacity takes effect as the running jobs finish.

    A `dns:///name:port` entry is every address the name resolves to, resolved again every `interval`
    seconds (discovery.py): a trainer that appears is asked its group size (GetInfo; 1 when it does not
    answer) before it gets a job; one that goes away gets no new job, its running jobs finish or fail (and
    are retried on another), and its channel closes when the last one ends. A failed resolution keeps the
    trainers found before; a name with no address (scaled to zero) leaves jobs waiting for a trainer.

    A trainer whose call just failed (`failed`) gets no job for `cooldown` seconds while another trainer is
    there: jobs wait for that one's slots instead of spending their attempts on one that is likely down
    (half-open: after the cooldown one job tries it again). When every trainer failed lately, any is used.
    """

    def __init__(
        self,
        addresses: list[str],
        connect: Connect = connect_trainer,
        resolver: Resolver = system_resolver,
        interval: float = 10.0,
        info_timeout: float = 10.0,
        cooldown: float = 30.0,
    ) -> None:
        if not addresses:
            raise ValueError("at least one trainer address is needed")
        targets = [parse_target(address) for address in addresses]
        self.targets = [target for target in targets if target is not None]
        self._static = [a for a, target in zip(addresses, targets, strict=True) if target is None]
        self._connect, self._resolver = connect, resolver
        self.interval, self.info_timeout, self.cooldown = interval, info_timeout, cooldown
        self.endpoints = [connect(address) for address in self._static]
        #: The addresses each name had at its last successful resolution.
        self._found: dict[DnsTarget, list[str]] = {target: [] for target in self.targets}
        #: Trainers gone from DNS with jobs still running: closed when the last one ends.
        self._draining: dict[str, TrainerEndpoint] = {}
        self._closing: set[asyncio.Task[None]] = set()
        self._watcher: asyncio.Task[None] | None = None
        self._resolving = asyncio.Lock()
        self._turn = 0  # breaks ties round-robin, so one job after another still alternates trainers
        # Callers waiting for a slot. The event loop is single-threaded and nothing awaits between choosing
        # a trainer and counting the slot, so no lock is needed; a freed slot wakes every waiter to look again.
        self._waiters: list[asyncio.Future[None]] = []

    def set_capacity(self, address: str, max_group_size: int) -> None:
        """The trainer at `address` takes `max_group_size` jobs at once (0, as an older trainer says: 1)."""
        for endpoint in self.endpoints:
            if endpoint.address == address:
                endpoint.capacity = max(1, max_group_size)
        self._wake()

    # ---- discovery -------------------------------------------------------------------------------------

    def start(self) -> None:
        """Resolve the DNS entries every `interval` seconds from now on (nothing to do without one)."""
        if self.targets and self._watcher is None:
            self._watcher = asyncio.get_running_loop().create_task(self._watch(), name="trainer-discovery")

    async def _watch(self) -> None:
        while True:
            try:
                await self.refresh()
            except Exception:  # a bug here must not end discovery for good
                log.exception("trainer discovery failed; trying again in %.0fs", self.interval)
            await asyncio.sleep(self.interval)

    async def refresh(self) -> None:
        """Resolve every DNS entry now; add the trainers that appeared and retire those that went away."""
        async with self._resolving:
            for target in self.targets:
                try:
                    self._found[target] = sorted(set(await self._resolver(target.host, target.port)))
                except Exception as exc:  # the resolver's failure (socket.gaierror, OSError...): keep the set
                    log.warning(
                        "trainer discovery: resolving %s failed (%s); keeping the %d trainer(s) found before",
                        target.text,
                        str(exc) or type(exc).__name__,
                        len(self._found[target]),
                    )
            await self._update()

    async def _update(self) -> None:
        wanted: dict[str, str] = {}  # address -> the name it was found under
        for target, found in self._found.items():
            for address in found:
                if address not in self._static:
                    wanted.setdefault(address, target.host)
        for endpoint in [
            e for e in self.endpoints if e.address not in wanted and e.address not in self._static
        ]:
            self.endpoints.remove(endpoint)
            log.info("trainer discovery: %s is gone; it gets no new job", endpoint.address)
            if endpoint.in_flight:
                self._draining[endpoint.address] = endpoint
            else:
                self._close_later(endpoint)
        known = {endpoint.address for endpoint in self.endpoints}
        added = [
            self._draining.pop(address, None) or self._connect(address, name)
            for address, name in wanted.items()
            if address not in known
        ]
        await asyncio.gather(*(self._learn_capacity(endpoint) for endpoint in added))
        for endpoint in added:
            log.info("trainer discovery: %s joined (%d slot(s))", endpoint.address, endpoint.capacity)
        self.endpoints.extend(added)
        self._wake()

    async def _learn_capacity(self, endpoint: TrainerEndpoint) -> None:
        """Ask a trainer that appeared how many jobs it groups, before it gets any (1 when it cannot say)."""
        try:
            info = await endpoint.stub.GetInfo(common_pb2.GetInfoRequest(), timeout=self.info_timeout)
        except grpc.aio.AioRpcError as exc:
            log.warning(
                "trainer %s did not answer GetInfo (%s); giving it 1 slot", endpoint.address, exc.code()
            )
            endpoint.capacity = 1
            return
        endpoint.capacity = max(1, info.max_group_size)

    def missing(self) -> str:
        """Why there is no trainer: the names that resolved to nothing."""
        return "none found at " + ", ".join(target.text for target in self.targets)

    async def present(self, on_empty: Callable[[str], None] | None = None) -> list[TrainerEndpoint]:
        """The trainers there are now, the DNS entries resolved first; while there is none, waits for one
        (`on_empty(why)` is told first). A run's check waits here, inside a trainer call, so the wait counts
        as a pending training call: an autoscaler watching `seal_pending_training_jobs` scales from zero."""
        self.start()
        await self.refresh()
        while not self.endpoints:
            if on_empty is not None:
                on_empty(self.missing())
            await self._wait()
        return list(self.endpoints)

    # ---- slots -----------------------------------------------------------------------------------------

    def failed(self, endpoint: TrainerEndpoint) -> None:
        """A call to `endpoint` failed for want of the trainer (UNAVAILABLE, or past its deadline): cool it
        down. When the cooldown ends the waiters look again, so a trainer that came back is not left idle
        behind a long job."""
        endpoint.failed_at = time.monotonic()
        with contextlib.suppress(RuntimeError):  # no running loop (a test calling it directly): nobody waits
            asyncio.get_running_loop().call_later(self.cooldown, self._wake)

    def observed(self, endpoint: TrainerEndpoint, error: grpc.aio.AioRpcError | None) -> None:
        """After a Train call on `endpoint`: a success (`error` None) clears its cooldown; UNAVAILABLE from
        the trainer itself (not its store being away) starts one, and so does a missed deadline: a trainer
        that is stuck (a frozen host) would otherwise take the next job and hold it for a whole deadline."""
        if error is None:
            endpoint.failed_at = None
        elif error.code() == grpc.StatusCode.DEADLINE_EXCEEDED or (
            error.code() == grpc.StatusCode.UNAVAILABLE and not is_store_outage(error)
        ):
            self.failed(endpoint)

    def cooling_down(self, endpoint: TrainerEndpoint, now: float | None = None) -> bool:
        """Whether a call to `endpoint` failed less than `cooldown` seconds before `now` (time.monotonic())."""
        now = time.monotonic() if now is None else now
        return endpoint.failed_at is not None and now - endpoint.failed_at < self.cooldown

    @property
    def draining(self) -> list[TrainerEndpoint]:
        """The trainers gone from DNS whose running jobs have not all ended yet."""
        return list(self._draining.values())

    def _trusted(self, endpoint: TrainerEndpoint, avoid: str, now: float) -> bool:
        return endpoint.address != avoid and not self.cooling_down(endpoint, now)

    def _choose(self, avoid: str) -> TrainerEndpoint | None:
        count = len(self.endpoints)
        now = time.monotonic()
        # The trainer that just failed (`avoid`) and those that failed lately are passed over while another
        # is there: its slots free up in time (a freed slot wakes the waiters). When none is, any will do.
        any_trusted = any(self._trusted(e, avoid, now) for e in self.endpoints)
        free = [
            (i, e)
            for i, e in enumerate(self.endpoints)
            if e.in_flight < e.capacity and (self._trusted(e, avoid, now) or not any_trusted)
        ]
        if not free:
            return None
        index, chosen = min(
            free,
            key=lambda item: (
                item[1].address == avoid,  # the trainer that just failed: only when no other has a slot
                item[1].load,  # the share of its slots in use: trainers of different capacity fill evenly
                (item[0] - self._turn) % count,
            ),
        )
        self._turn = (index + 1) % count
        return chosen

    def _wake(self) -> None:
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    async def _wait(self) -> None:
        """Until a slot frees, a capacity rises or a trainer joins."""
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        finally:
            if waiter in self._waiters:  # cancelled while waiting
                self._waiters.remove(waiter)

    @contextlib.asynccontextmanager
    async def acquire(
        self, avoid: str = "", on_empty: Callable[[str], None] | None = None
    ) -> AsyncIterator[TrainerEndpoint]:
        """The least-loaded trainer with a free slot, other than `avoid` (the one that failed) and those
        that failed lately, unless no other trainer is there.

        Waits while every trainer it may use is full, or while there is none (`on_empty(why)` is told); a
        slot freed, a capacity raised, a cooldown ended or a trainer found wakes the waiters. Waiting uses up
        no attempt of the call.
        """
        self.start()
        while (chosen := self._choose(avoid)) is None:
            if not self.endpoints and on_empty is not None:
                on_empty(self.missing())
            await self._wait()
        chosen.in_flight += 1
        try:
            yield chosen
        finally:
            chosen.in_flight -= 1
            if not chosen.in_flight and self._draining.get(chosen.address) is chosen:
                del self._draining[chosen.address]  # its last job ended: nothing uses the channel now
                self._close_later(chosen)
            self._wake()

    def _close_later(self, endpoint: TrainerEndpoint) -> None:
        if endpoint.channel is not None:
            task = asyncio.get_running_loop().create_task(endpoint.channel.close())
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)

    async def close(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
            await asyncio.gather(self._watcher, return_exceptions=True)
        for endpoint in [*self.endpoints, *self._draining.values()]:
            if endpoint.channel is not None:
                await endpoint.channel.close()
        await asyncio.gather(*self._closing, return_exceptions=True)


class ServiceClients:
    """Channels to every service, each sending the token and speaking TLS as `security` says."""

    def __init__(
        self,
        settings: CoordinatorSettings,
        security: Security | None = None,
        resolver: Resolver = system_resolver,
    ) -> None:
        self.settings = settings
        self._generator_channel = open_channel(settings.generator_address, security)
        self._evaluator_channel = open_channel(settings.evaluator_address, security)
        self.generator = generator_pb2_grpc.GeneratorStub(self._generator_channel)
        self.evaluator = evaluator_pb2_grpc.EvaluatorStub(self._evaluator_channel)
        self.trainers = TrainerPool(
            settings.trainer_addresses,
            functools.partial(connect_trainer, security=security),
            resolver,
            interval=settings.discovery_interval_seconds,
            info_timeout=settings.info_timeout_seconds,
        )
        with contextlib.suppress(RuntimeError):  # built in the app's lifespan: discovery starts with it
            self.trainers.start()
        # One generation and one evaluation at a time per replica: each replica runs one model job at a time
        # anyway, and queueing here keeps deadlines meaningful.
        self.generator_slot = asyncio.Semaphore(settings.generator_concurrency)
        self.evaluator_slot = asyncio.Semaphore(settings.evaluator_concurrency)

    async def close(self) -> None:
        await self._generator_channel.close()
        await self._evaluator_channel.close()
        await self.trainers.close()
