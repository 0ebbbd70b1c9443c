"""gRPC clients of the generator, the trainers and the evaluator, with a pool that spreads training jobs."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator
from dataclasses import dataclass

import grpc

from seal.v1 import evaluator_pb2_grpc, generator_pb2_grpc, trainer_pb2_grpc
from seal_lab.grpc_client import open_channel

from .settings import CoordinatorSettings


@dataclass
class TrainerEndpoint:
    address: str
    channel: grpc.aio.Channel
    stub: trainer_pb2_grpc.TrainerStub
    busy: asyncio.Semaphore


class TrainerPool:
    """Hands each training job to a free trainer; one job per trainer at a time (each has one model)."""

    def __init__(self, addresses: list[str]) -> None:
        if not addresses:
            raise ValueError("at least one trainer address is needed")
        self.endpoints = []
        for address in addresses:
            channel = open_channel(address)
            self.endpoints.append(
                TrainerEndpoint(address, channel, trainer_pb2_grpc.TrainerStub(channel), asyncio.Semaphore(1))
            )
        self._order = itertools.cycle(range(len(self.endpoints)))
        self._free = asyncio.Condition()

    @contextlib.asynccontextmanager
    async def acquire(self, avoid: str = "") -> AsyncIterator[TrainerEndpoint]:
        """A free trainer, preferring one other than `avoid` (the one that just failed)."""
        async with self._free:
            while True:
                candidates = [self.endpoints[next(self._order)] for _ in self.endpoints]
                candidates.sort(key=lambda e: e.address == avoid and len(self.endpoints) > 1)
                chosen = next((e for e in candidates if not e.busy.locked()), None)
                if chosen is not None:
                    await chosen.busy.acquire()
                    break
                await self._free.wait()
        try:
            yield chosen
        finally:
            chosen.busy.release()
            async with self._free:
                self._free.notify_all()

    async def close(self) -> None:
        for endpoint in self.endpoints:
            await endpoint.channel.close()


class ServiceClients:
    def __init__(self, settings: CoordinatorSettings) -> None:
        self.settings = settings
        self._generator_channel = open_channel(settings.generator_address)
        self._evaluator_channel = open_channel(settings.evaluator_address)
        self.generator = generator_pb2_grpc.GeneratorStub(self._generator_channel)
        self.evaluator = evaluator_pb2_grpc.EvaluatorStub(self._evaluator_channel)
        self.trainers = TrainerPool(settings.trainer_addresses)
        # One generation and one evaluation at a time: each service runs one model job at a time anyway,
        # and queueing here keeps deadlines meaningful.
        self.generator_slot = asyncio.Semaphore(1)
        self.evaluator_slot = asyncio.Semaphore(1)

    async def close(self) -> None:
        await self._generator_channel.close()
        await self._evaluator_channel.close()
        await self.trainers.close()
