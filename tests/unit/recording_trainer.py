"""A stand-in Trainer servicer for the operators' tests: it records each call's metadata, answers GetInfo,
trains nothing (a result of 100 tokens in 2 s), and refuses a dataset named "bad" with INVALID_ARGUMENT."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from seal.v1 import common_pb2, trainer_pb2, trainer_pb2_grpc
from seal_lab.errors import InvalidArgument
from seal_lab.serve.callgate import CallGate
from seal_lab.serve.server import GrpcService


class RecordingTrainer(trainer_pb2_grpc.TrainerServicer):
    def __init__(self) -> None:
        self.metadata: list[dict[str, str]] = []
        self.call_gate = CallGate(4, "training jobs", "SEAL_TRAINER_MAX_QUEUED_JOBS")

    async def load(self) -> None:
        pass

    async def GetInfo(self, request: Any, context: Any) -> common_pb2.ServiceInfo:
        self.metadata.append(dict(context.invocation_metadata()))
        return common_pb2.ServiceInfo(service="trainer")

    async def Train(self, request: Any, context: Any) -> AsyncIterator[trainer_pb2.TrainEvent]:
        self.metadata.append(dict(context.invocation_metadata()))
        if request.dataset_key == "bad":
            raise InvalidArgument("no such dataset")
        async with self.call_gate.admit(context):
            yield trainer_pb2.TrainEvent(progress=trainer_pb2.TrainProgress(step=1, total_steps=1))
            metrics = trainer_pb2.TrainMetrics(tokens=100, seconds=2.0)
            yield trainer_pb2.TrainEvent(
                result=trainer_pb2.TrainResult(adapter_key="adapters/x", metrics=metrics)
            )


def trainer_service(servicer: RecordingTrainer) -> GrpcService:
    return GrpcService("seal.v1.Trainer", servicer, trainer_pb2_grpc.add_TrainerServicer_to_server)
