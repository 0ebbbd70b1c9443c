"""gRPC clients of the generator, the trainers and the evaluator, with a pool that spreads training jobs."""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import grpc

from seal.v1 import evaluator_pb2_grpc, generator_pb2_grpc, trainer_pb2_grpc
from seal_lab.grpc_client import open_channel
from seal_lab.security import Security

from .settings import CoordinatorSettings


@dataclass
class TrainerEndpoint:
    address: str
    channel: grpc.aio.Channel
    stub: trainer_pb2_grpc.TrainerStub
    # Jobs this trainer takes at once: its GetInfo `max_group_size` (it trains that many together).
    capacity: int = 1
    in_flight: int = 0

    @property
    def load(self) -> float:
        return self.in_flight / self.capacity


def connect_trainer(address: str, security: Security | None = None) -> TrainerEndpoint:
    channel = open_channel(address, security)
    return TrainerEndpoint(address, channel, trainer_pb2_grpc.TrainerStub(channel))


class TrainerPool:
    """Hands each training job to a trainer with a free slot: up to `capacity` jobs in flight per trainer.

    A trainer that groups concurrent Train calls (`max_group_size` > 1) only fills a group when that many
    calls are open at once, so the pool keeps that many in flight; a trainer that trains one job at a time
    gets one. Slots are counted on the endpoint, not in a semaphore, so a capacity that changes while jobs
    run (a trainer restarted with another group size) neither loses nor double-counts them: a smaller
    capacity takes effect as the running jobs finish.
    """

    def __init__(
        self, addresses: list[str], connect: Callable[[str], TrainerEndpoint] = connect_trainer
    ) -> None:
        if not addresses:
            raise ValueError("at least one trainer address is needed")
        self.endpoints = [connect(address) for address in addresses]
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

    def _choose(self, avoid: str) -> TrainerEndpoint | None:
        count = len(self.endpoints)
        free = [(i, e) for i, e in enumerate(self.endpoints) if e.in_flight < e.capacity]
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

    @contextlib.asynccontextmanager
    async def acquire(self, avoid: str = "") -> AsyncIterator[TrainerEndpoint]:
        """The least-loaded trainer with a free slot, preferring one other than `avoid` (the one that failed).

        Waits while every trainer is full; a slot freed (or a capacity raised) wakes the waiters.
        """
        while (chosen := self._choose(avoid)) is None:
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            finally:
                if waiter in self._waiters:  # cancelled while waiting
                    self._waiters.remove(waiter)
        chosen.in_flight += 1
        try:
            yield chosen
        finally:
            chosen.in_flight -= 1
            self._wake()

    async def close(self) -> None:
        for endpoint in self.endpoints:
            await endpoint.channel.close()


class ServiceClients:
    """Channels to every service, each sending the token and speaking TLS as `security` says."""

    def __init__(self, settings: CoordinatorSettings, security: Security | None = None) -> None:
        self.settings = settings
        self._generator_channel = open_channel(settings.generator_address, security)
        self._evaluator_channel = open_channel(settings.evaluator_address, security)
        self.generator = generator_pb2_grpc.GeneratorStub(self._generator_channel)
        self.evaluator = evaluator_pb2_grpc.EvaluatorStub(self._evaluator_channel)
        self.trainers = TrainerPool(
            settings.trainer_addresses, functools.partial(connect_trainer, security=security)
        )
        # One generation and one evaluation at a time: each service runs one model job at a time anyway,
        # and queueing here keeps deadlines meaningful.
        self.generator_slot = asyncio.Semaphore(1)
        self.evaluator_slot = asyncio.Semaphore(1)

    async def close(self) -> None:
        await self._generator_channel.close()
        await self._evaluator_channel.close()
        await self.trainers.close()
