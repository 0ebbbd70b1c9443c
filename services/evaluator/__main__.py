"""`seal-evaluator`: closed-book question answering under adapters, as a gRPC service."""

from __future__ import annotations

from seal.v1 import evaluator_pb2_grpc
from seal_lab.security import security_from_environment
from seal_lab.serve.host import ModelHost, run_grpc_service
from seal_lab.serve.server import GrpcService
from seal_lab.settings import LoggingSettings, ModelSettings, StoreSettings
from seal_lab.store.open import open_store

from .server import EvaluatorServicer
from .settings import EvaluatorSettings


def main() -> None:
    settings = EvaluatorSettings()
    security = security_from_environment("seal-evaluator")

    def build():
        servicer = EvaluatorServicer(
            open_store(StoreSettings()), ModelHost("evaluator", ModelSettings()), settings
        )
        services = [
            GrpcService("seal.v1.Evaluator", servicer, evaluator_pb2_grpc.add_EvaluatorServicer_to_server)
        ]
        return services, servicer.load

    run_grpc_service("evaluator", settings, LoggingSettings(), build, security)


if __name__ == "__main__":
    main()
