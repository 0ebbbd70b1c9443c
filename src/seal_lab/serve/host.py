"""What a model-serving gRPC service shares: the model host, service info, and the process entry point."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from seal.v1 import common_pb2
from seal_lab import __version__
from seal_lab.errors import Unavailable
from seal_lab.logging import configure_logging
from seal_lab.model.base import LoadedModel, ModelWorker, load_model
from seal_lab.runtime import MODEL_EXTRA_HINT, missing_model_packages, runtime_versions
from seal_lab.security import Security, refuse_unsafe_start
from seal_lab.serve.metrics import ServiceMetrics
from seal_lab.serve.metrics_http import start_metrics_server
from seal_lab.serve.server import GrpcService, serve_until_signalled
from seal_lab.settings import GrpcServiceSettings, LoggingSettings, ModelSettings

log = logging.getLogger(__name__)


class ModelHost:
    """Loads the base model once per process and runs model work one job at a time."""

    def __init__(self, service: str, settings: ModelSettings) -> None:
        self.service = service
        self.settings = settings
        self.worker = ModelWorker(service)
        self._loaded: LoadedModel | None = None

    async def load(self) -> LoadedModel:
        if self._loaded is None:
            self._loaded = await self.worker.run(load_model, self.settings)
        return self._loaded

    @property
    def loaded(self) -> LoadedModel:
        if self._loaded is None:
            raise Unavailable(f"{self.service} is still loading its model")
        return self._loaded

    def info(self, **extra: object) -> common_pb2.ServiceInfo:
        loaded = self.loaded
        return common_pb2.ServiceInfo(
            service=self.service,
            version=__version__,
            model_name=loaded.name,
            model_fingerprint=loaded.fingerprint,
            device=loaded.device,
            dtype=loaded.dtype,
            runtime=runtime_versions(),
            **extra,
        )


def run_grpc_service(
    name: str,
    settings: GrpcServiceSettings,
    logging_settings: LoggingSettings,
    build: Callable[[], tuple[list[GrpcService], Callable[[], Awaitable[object]]]],
    security: Security,
) -> None:
    """Process entry point: refuse an exposed port without a token (exit 2), logging, then build servicers,
    serve metrics (`metrics_port`), load, serve until SIGTERM."""
    refuse_unsafe_start(f"seal-{name}", settings.host, security)
    if missing := missing_model_packages():
        raise SystemExit(f"seal-{name} needs {', '.join(missing)}: {MODEL_EXTRA_HINT}")
    configure_logging(logging_settings.level, logging_settings.json_format, service=name)
    services, load = build()
    metrics = None
    if settings.metrics_port:
        metrics = ServiceMetrics()
        try:
            start_metrics_server(metrics.registry, settings.host, settings.metrics_port, security)
        except OSError as exc:  # the port is taken, or the host is not this machine's: one line, exit 1
            reason = exc.strerror or type(exc).__name__
            raise SystemExit(
                f"seal-{name}: cannot serve metrics on {settings.host}:{settings.metrics_port}: {reason}"
            ) from None
        log.info(
            "metrics on http%s://%s:%d/metrics",
            "s" * bool(security.tls),
            settings.host,
            settings.metrics_port,
        )

    async def _load() -> None:
        await load()

    asyncio.run(
        serve_until_signalled(
            services,
            settings.host,
            settings.port,
            settings.grace_seconds,
            _load,
            security=security,
            metrics=metrics,
        )
    )
