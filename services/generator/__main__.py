"""`seal-generator`: the self-edit generator as a gRPC service."""

from __future__ import annotations

from seal.v1 import generator_pb2_grpc
from seal_lab.security import security_from_environment
from seal_lab.serve.host import ModelHost, run_grpc_service
from seal_lab.serve.server import GrpcService
from seal_lab.settings import LoggingSettings, ModelSettings, StoreSettings
from seal_lab.store.open import open_store
from seal_lab.store.outage import OutagePolicy

from .backends import OpenAIBackend
from .server import GeneratorServicer
from .settings import GeneratorSettings


def build_servicer(
    settings: GeneratorSettings, model_settings: ModelSettings, store_settings: StoreSettings
) -> GeneratorServicer:
    remote = None
    if settings.backend == "openai":
        key = settings.openai_api_key.get_secret_value() if settings.openai_api_key else ""
        remote = OpenAIBackend(
            settings.openai_base_url,
            settings.openai_model,
            key,
            settings.openai_timeout_seconds,
            max_retries=settings.openai_max_retries,
            max_retry_wait_seconds=settings.openai_max_retry_wait_seconds,
        )
    return GeneratorServicer(
        open_store(store_settings),
        ModelHost("generator", model_settings),
        remote,
        OutagePolicy(max_seconds=settings.store_outage_seconds),
        settings.max_queued_calls,
    )


def main() -> None:
    settings = GeneratorSettings()
    security = security_from_environment("seal-generator")

    def build():
        servicer = build_servicer(settings, ModelSettings(), StoreSettings())
        services = [
            GrpcService("seal.v1.Generator", servicer, generator_pb2_grpc.add_GeneratorServicer_to_server)
        ]
        return services, servicer.load

    run_grpc_service("generator", settings, LoggingSettings(), build, security)


if __name__ == "__main__":
    main()
