"""Fake generator, trainer and evaluator stubs for the coordinator's RunManager: no model, no gRPC server.

Each fake answers at once with small deterministic records. `fail(rpc, code, times)` makes its next calls of
`rpc` fail with a gRPC status; `hold(rpc)` makes them wait until `release(rpc)`. `calls` counts every call,
`cancelled` the held calls whose caller cancelled them (what a real service sees as a cancelled RPC).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import grpc

from seal.v1 import common_pb2, evaluator_pb2, generator_pb2, trainer_pb2
from seal_lab.formats.directive import DEFAULT_DIRECTIVE, DirectiveLimits
from seal_lab.rpc.wire import CAUSE_KEY, STORE_CAUSE
from services.coordinator.engine.clients import TrainerEndpoint, TrainerPool

FINGERPRINT = "sha256:fake-model"
FORMAT = "implications"
#: F1 of the base model, and of every adapter, on any passage's questions.
BASE_F1, ADAPTED_F1 = 0.1, 0.4


def rpc_error(code: grpc.StatusCode, details: str, store_outage: bool = False) -> grpc.aio.AioRpcError:
    """What a stub raises; `store_outage`: UNAVAILABLE because the service cannot reach the store."""
    trailing = grpc.aio.Metadata((CAUSE_KEY, STORE_CAUSE)) if store_outage else grpc.aio.Metadata()
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), trailing, details=details)


class FakeService:
    def __init__(self, service: str) -> None:
        self.service = service
        self.fingerprint = FINGERPRINT
        self.dtype = "float32"
        #: A trainer's published directive limits.
        self.limits = DirectiveLimits()
        self.calls: Counter[str] = Counter()
        self.cancelled: Counter[str] = Counter()
        self.requests: list[Any] = []
        self._faults: dict[str, list[grpc.aio.AioRpcError]] = {}
        self._held: dict[str, asyncio.Event] = {}
        #: Set when a held call is waiting.
        self.holding = asyncio.Event()

    def fail(
        self,
        rpc: str,
        code: grpc.StatusCode,
        times: int = 1,
        details: str = "injected",
        store_outage: bool = False,
    ) -> None:
        self._faults.setdefault(rpc, []).extend(rpc_error(code, details, store_outage) for _ in range(times))

    def recover(self) -> None:
        """Forget the failures not yet raised."""
        self._faults.clear()

    def hold(self, rpc: str) -> None:
        self._held[rpc] = asyncio.Event()

    def release(self, rpc: str) -> None:
        self._held.pop(rpc).set()

    async def _enter(self, rpc: str, request: Any) -> None:
        self.calls[rpc] += 1
        self.requests.append(request)
        if rpc in self._held:
            self.holding.set()
            try:
                await self._held[rpc].wait()
            except asyncio.CancelledError:
                self.cancelled[rpc] += 1
                raise
        if self._faults.get(rpc):
            raise self._faults[rpc].pop(0)

    async def GetInfo(self, request: common_pb2.GetInfoRequest, timeout: float) -> common_pb2.ServiceInfo:
        await self._enter("GetInfo", request)
        return common_pb2.ServiceInfo(
            service=self.service,
            model_name="fake",
            model_fingerprint=self.fingerprint,
            dtype=self.dtype,
            formats=[FORMAT] if self.service == "generator" else [],
            backend="local",
            limits=self.limits.to_proto() if self.service == "trainer" else None,
            max_group_size=1,
        )


class FakeGenerator(FakeService):
    def __init__(self) -> None:
        super().__init__("generator")

    def _response(
        self, passage_id: str, edit_format: str, count: int, kind: type = generator_pb2.GenerateResponse
    ) -> Any:
        return kind(
            seconds=0.5,
            self_edits=[
                generator_pb2.SelfEdit(
                    dataset_key=f"datasets/{passage_id}-{edit_format}-{i}.jsonl",
                    format=edit_format,
                    sample_index=i,
                    directive=DEFAULT_DIRECTIVE.to_proto(),
                    directive_source=generator_pb2.DIRECTIVE_SOURCE_PARSED,
                    num_texts=2,
                    preview=f"self-edit {i} of {passage_id}",
                )
                for i in range(count)
            ],
        )

    async def Generate(self, request: generator_pb2.GenerateRequest, timeout: float) -> Any:
        await self._enter("Generate", request)
        return self._response(request.passage.passage_id, request.format, request.num_samples)

    async def Import(self, request: generator_pb2.ImportRequest, timeout: float) -> Any:
        await self._enter("Import", request)
        return self._response(
            request.passage.passage_id, request.format, len(request.outputs), generator_pb2.ImportResponse
        )


class FakeTrainer(FakeService):
    def __init__(self) -> None:
        super().__init__("trainer")
        #: Set: after its last step each call says it waits for this (as a trainer whose store is away while
        #: it saves the adapter), again every 50 ms while "Save" is held (`hold("Save")`), then answers.
        self.waiting_for = ""

    async def Train(self, request: trainer_pb2.TrainRequest, timeout: float) -> AsyncIterator[Any]:
        await self._enter("Train", request)
        yield trainer_pb2.TrainEvent(progress=trainer_pb2.TrainProgress(step=1, total_steps=2, loss=1.5))
        while self.waiting_for:  # a notice per retry, as the trainer's, until the store takes the adapter
            yield trainer_pb2.TrainEvent(
                progress=trainer_pb2.TrainProgress(
                    step=2, total_steps=2, loss=1.0, waiting_for=self.waiting_for
                )
            )
            if "Save" not in self._held:
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._held["Save"].wait(), 0.05)
        job = trainer_pb2.TrainRequest(
            dataset_key=request.dataset_key, directive=request.directive, seed=request.seed
        )
        digest = hashlib.sha256(job.SerializeToString(deterministic=True)).hexdigest()[
            :16
        ]  # as the trainer: no job id
        yield trainer_pb2.TrainEvent(
            result=trainer_pb2.TrainResult(
                adapter_key=f"adapters/{digest}",
                metrics=trainer_pb2.TrainMetrics(step_loss=[1.5, 1.0], tokens=100, seconds=2.0, steps=2),
            )
        )


class FakeEvaluator(FakeService):
    def __init__(self) -> None:
        super().__init__("evaluator")

    async def Evaluate(self, request: evaluator_pb2.EvaluateRequest, timeout: float) -> Any:
        await self._enter("Evaluate", request)
        return evaluator_pb2.EvaluateResponse(
            seconds=0.25,
            evaluations=[
                evaluator_pb2.AdapterEvaluation(
                    adapter_key=key, mean=evaluator_pb2.Scores(f1=ADAPTED_F1 if key else BASE_F1)
                )
                for key in request.adapter_keys
            ],
        )


class FakeClients:
    """What RunManager uses of ServiceClients, over fakes; trainers by address."""

    def __init__(self, trainer_addresses: list[str]) -> None:
        self.generator = FakeGenerator()
        self.evaluator = FakeEvaluator()
        self.trainer = {address: FakeTrainer() for address in trainer_addresses}
        self.trainers = TrainerPool(
            trainer_addresses, connect=lambda address: TrainerEndpoint(address, None, self.trainer[address])
        )
        self.generator_slot = asyncio.Semaphore(1)
        self.evaluator_slot = asyncio.Semaphore(1)
