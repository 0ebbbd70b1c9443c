"""`seal-trainer`: the LoRA trainer as a gRPC service (CPU or CUDA)."""

from __future__ import annotations

from seal.v1 import trainer_pb2_grpc
from seal_lab.security import security_from_environment
from seal_lab.serve.host import ModelHost, run_grpc_service
from seal_lab.serve.server import GrpcService
from seal_lab.settings import LoggingSettings, ModelSettings, StoreSettings
from seal_lab.store.open import open_store

from .server import TrainerServicer
from .settings import TrainerSettings


def main() -> None:
    settings = TrainerSettings()
    security = security_from_environment("seal-trainer")

    def build():
        servicer = TrainerServicer(
            open_store(StoreSettings()), ModelHost("trainer", ModelSettings()), settings
        )
        services = [GrpcService("seal.v1.Trainer", servicer, trainer_pb2_grpc.add_TrainerServicer_to_server)]
        return services, servicer.load

    run_grpc_service("trainer", settings, LoggingSettings(), build, security)


if __name__ == "__main__":
    main()
