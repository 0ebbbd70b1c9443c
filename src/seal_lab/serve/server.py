"""gRPC server bootstrap shared by the generator, trainer and evaluator.

- standard `grpc.health.v1` service: NOT_SERVING until the service's model is loaded, then SERVING;
- with a token, an interceptor that refuses calls without it (health stays open; `seal_lab.rpc.auth`);
- an interceptor that maps `SealError` to its status code and logs unexpected errors as INTERNAL, and logs
  each call with the run and job ids its metadata carries (`seal_lab.rpc.callids`), counting it in the metrics;
- server reflection (grpcurl), behind the token like every method but health;
- TLS (mutual TLS as an option) when the security settings name a certificate, else plaintext;
- SIGTERM/SIGINT -> health NOT_SERVING -> `server.stop(grace)` so in-flight calls can finish.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import signal
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from seal_lab.errors import SealError, StoreUnavailable
from seal_lab.logging import bind_context
from seal_lab.rpc.auth import OPEN_METHOD_PREFIX, BearerTokenInterceptor, server_credentials
from seal_lab.rpc.callids import incoming
from seal_lab.rpc.wire import CAUSE_KEY, MAX_MESSAGE_BYTES, STORE_CAUSE
from seal_lab.security import Security
from seal_lab.serve.callgate import CallGate
from seal_lab.serve.metrics import ServiceMetrics

log = logging.getLogger(__name__)


def _abort_code(exc: BaseException) -> tuple[grpc.StatusCode, str]:
    """The status and message a caller gets: a domain error's own; for anything else only its type (its
    text may name files or hold a trace: it is logged here, never sent)."""
    if isinstance(exc, SealError):
        return exc.grpc_code, exc.message
    transient = _transient_cause(exc)
    if transient:
        return grpc.StatusCode.UNAVAILABLE, f"{transient}; try again later"
    return grpc.StatusCode.INTERNAL, f"internal error: {type(exc).__name__}"


def _transient_cause(exc: BaseException) -> str:
    """Out of memory, or a full local disk: the same call can succeed later or on another replica.

    UNAVAILABLE rather than RESOURCE_EXHAUSTED + busy: busy means "queued behind other calls", which a caller
    waits out; these are failures, retried with backoff within the caller's retry budget (so one that
    happens every time still ends), and a training job is retried on another trainer where there is one.
    """
    seen: BaseException | None = exc
    for _ in range(5):  # the error itself, or what it was raised from
        if seen is None:
            break
        if isinstance(seen, MemoryError) or type(seen).__name__ == "OutOfMemoryError":  # torch's, by name
            return "the service ran out of memory"
        if isinstance(seen, OSError) and seen.errno in (errno.ENOSPC, errno.EDQUOT):
            return "the service's local disk is full"
        seen = seen.__cause__ or seen.__context__
    return ""


def _trailing_metadata(exc: BaseException) -> tuple[tuple[str, str], ...]:
    return ((CAUSE_KEY, STORE_CAUSE),) if isinstance(exc, StoreUnavailable) else ()


class _Call:
    """One call of a `seal.v1` method: its run and job ids bound to every log line it writes
    (`seal_lab.rpc.callids`), a line when it starts and one when it is answered, and its metrics."""

    def __init__(
        self, method: str, context: grpc.aio.ServicerContext, metrics: ServiceMetrics | None
    ) -> None:
        self.method = method
        self.context = context
        self.metrics = metrics

    @contextlib.contextmanager
    def scope(self) -> Iterator[None]:
        code = grpc.StatusCode.OK
        with bind_context(**incoming(self.context.invocation_metadata())):
            log.info("%s started", self.method)
            if self.metrics:
                self.metrics.started(self.method)
            started = time.perf_counter()
            try:
                yield
            except grpc.aio.AbortError:
                code = self.context.code() or grpc.StatusCode.UNKNOWN
                raise
            except (asyncio.CancelledError, GeneratorExit):  # GeneratorExit: a stream closed before its end
                code = grpc.StatusCode.CANCELLED
                raise
            finally:
                seconds = time.perf_counter() - started
                log.info("%s answered %s in %.2fs", self.method, code.name, seconds)
                if self.metrics:
                    self.metrics.finished(self.method, code, seconds)

    def answered(self, message: Any) -> Any:
        if self.metrics:
            self.metrics.answered(self.method, message)
        return message


def _wrap_unary(
    behavior: Callable[..., Awaitable[Any]], method: str, metrics: ServiceMetrics | None
) -> Callable[..., Awaitable[Any]]:
    async def wrapper(request: Any, context: grpc.aio.ServicerContext) -> Any:
        call = _Call(method, context, metrics)
        with call.scope():
            try:
                return call.answered(await behavior(request, context))
            except (asyncio.CancelledError, grpc.aio.AbortError):
                raise
            except Exception as exc:
                code, message = _abort_code(exc)
                _log_failure(method, code, exc)
                await context.abort(code, message, _trailing_metadata(exc))

    return wrapper


def _wrap_stream(
    behavior: Callable[..., Any], method: str, metrics: ServiceMetrics | None
) -> Callable[..., Any]:
    async def wrapper(request: Any, context: grpc.aio.ServicerContext) -> Any:
        call = _Call(method, context, metrics)
        with call.scope():
            try:
                async for item in behavior(request, context):
                    yield call.answered(item)
            except (asyncio.CancelledError, grpc.aio.AbortError):
                raise
            except Exception as exc:
                code, message = _abort_code(exc)
                _log_failure(method, code, exc)
                await context.abort(code, message, _trailing_metadata(exc))

    return wrapper


def _log_failure(method: str, code: grpc.StatusCode, exc: BaseException) -> None:
    if code == grpc.StatusCode.INTERNAL or not isinstance(exc, SealError):  # the whole story stays here
        log.error("%s failed", method, exc_info=exc)
    else:
        log.warning("%s refused: %s %s", method, code.name, exc)


class ErrorMappingInterceptor(grpc.aio.ServerInterceptor):
    """Turns domain errors into status codes with their message; never leaks a stack trace to the caller.
    Every call but health's logs its ids and outcome, and counts in `metrics` when there are some."""

    def __init__(self, metrics: ServiceMetrics | None = None) -> None:
        self.metrics = metrics

    async def intercept_service(self, continuation: Callable, handler_call_details: Any) -> Any:
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or method.startswith(OPEN_METHOD_PREFIX):  # probes: no log line each
            return handler
        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(
                _wrap_unary(handler.unary_unary, method, self.metrics),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(
                _wrap_stream(handler.unary_stream, method, self.metrics),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        return handler


@dataclass
class GrpcService:
    """A servicer and how to attach it: `add(servicer, server)` is the generated `add_*Servicer_to_server`."""

    name: str  # full service name for health, e.g. "seal.v1.Trainer"
    servicer: Any
    add: Callable[[Any, grpc.aio.Server], None]


@dataclass
class RunningServer:
    server: grpc.aio.Server
    health: health.aio.HealthServicer
    port: int
    service_names: list[str] = field(default_factory=list)

    async def set_serving(self, serving: bool) -> None:
        status = (
            health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        for name in ["", *self.service_names]:
            await self.health.set(name, status)

    async def stop(self, grace: float) -> None:
        await self.set_serving(False)
        await self.server.stop(grace)


async def start_server(
    services: list[GrpcService],
    host: str,
    port: int,
    security: Security | None = None,
    metrics: ServiceMetrics | None = None,
) -> RunningServer:
    """Start serving (health NOT_SERVING) and return; port 0 picks a free port. `security`: the token every
    call but health must carry, and TLS; none: open and plaintext (loopback only: `refuse_unsafe_start`).
    `metrics`: counts every call, and watches each servicer's `call_gate` (its queue).

    Server reflection (grpcurl, Postman) lists the services and their messages. It needs the token like every
    method but health: what it tells (the API) is public anyway, but an open method is one more thing an
    unauthenticated caller reaches, and every client that has the token (grpcurl -H) can send it."""
    security = security or Security()
    interceptors: list[grpc.aio.ServerInterceptor] = [ErrorMappingInterceptor(metrics)]
    if security.token_value is not None:
        interceptors.insert(0, BearerTokenInterceptor(security.token_value))  # before anything else runs
    server = grpc.aio.server(
        interceptors=interceptors,
        options=[
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            # A port another server holds is an error, not shared: with SO_REUSEPORT (gRPC's default) two
            # services started on one port would split its calls between them.
            ("grpc.so_reuseport", 0),
        ],
    )
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    for service in services:
        service.add(service.servicer, server)
        if metrics is not None and isinstance(gate := getattr(service.servicer, "call_gate", None), CallGate):
            metrics.watch_gate(gate)
    names = [s.name for s in services]
    reflection.enable_server_reflection([*names, health.SERVICE_NAME, reflection.SERVICE_NAME], server)
    address = f"{host}:{port}"
    if security.tls is not None:
        bound = server.add_secure_port(address, server_credentials(security.tls))
    else:
        bound = server.add_insecure_port(address)
    if bound == 0:
        raise OSError(f"cannot bind gRPC server to {host}:{port}")
    running = RunningServer(server, health_servicer, bound, names)
    await running.set_serving(False)
    await server.start()
    return running


async def serve_until_signalled(
    services: list[GrpcService],
    host: str,
    port: int,
    grace: float,
    load: Callable[[], Awaitable[None]],
    on_ready: Callable[[int], None] | None = None,
    security: Security | None = None,
    metrics: ServiceMetrics | None = None,
) -> None:
    """Entry-point loop: start, load the model (health stays NOT_SERVING), serve, drain on SIGTERM."""
    running = await start_server(services, host, port, security, metrics)
    log.info("listening on %s:%d (NOT_SERVING until loaded)", host, running.port)
    stop_event = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop_event.set)
    load_task = asyncio.create_task(load())
    stop_task = asyncio.create_task(stop_event.wait())
    done, _ = await asyncio.wait({load_task, stop_task}, return_when=asyncio.FIRST_COMPLETED)
    if load_task in done:
        load_task.result()  # a failed load ends the process with its error
        await running.set_serving(True)
        log.info("SERVING on port %d", running.port)
        if on_ready:
            on_ready(running.port)
        await stop_task
    else:
        load_task.cancel()
    log.info("shutting down: draining for up to %.0fs", grace)
    await running.stop(grace)
    log.info("stopped")
