"""Client-side helpers: channels with sane options, health waiting, and status classification."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from seal_lab.rpc.auth import channel_credentials, metadata_interceptors, token_pairs
from seal_lab.rpc.callids import outgoing_now
from seal_lab.rpc.wire import BUSY_CAUSE, CAUSE_KEY, MAX_MESSAGE_BYTES, STORE_CAUSE
from seal_lab.security import Security

#: Failures worth retrying: the service is down, restarting or too slow. RESOURCE_EXHAUSTED is not one of
#: them: it is retried only when the service marks it busy (`is_busy`); a message over the size limit and
#: any other exhaustion fail the same way every time. So do INVALID_ARGUMENT, FAILED_PRECONDITION,
#: UNAUTHENTICATED, PERMISSION_DENIED and INTERNAL (a bug, or a refusal the service could not name).
RETRYABLE_CODES = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.ABORTED,
        grpc.StatusCode.CANCELLED,
        grpc.StatusCode.UNKNOWN,
    }
)


CHANNEL_OPTIONS = [
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    # Reconnect quickly after a service restarts instead of backing off for minutes.
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 2000),
]


#: For a `dns:///name:port` address: a connection to every address of the name, calls spread in turn. gRPC
#: resolves the name again when a connection drops (a replica restarting or going away), not on a timer.
ROUND_ROBIN = json.dumps({"loadBalancingConfig": [{"round_robin": {}}]})


def channel_options(address: str, server_name: str = "", tls: bool = False) -> list[tuple[str, Any]]:
    """The options of a channel to `address`; `server_name`: the name the server's certificate carries when
    `address` is one of the name's IP addresses (a trainer found by DNS), checked instead of the IP."""
    options: list[tuple[str, Any]] = list(CHANNEL_OPTIONS)
    if address.startswith("dns:"):
        options.append(("grpc.service_config", ROUND_ROBIN))
    if tls and server_name:
        options.append(("grpc.ssl_target_name_override", server_name))
    return options


def open_channel(address: str, security: Security | None = None, server_name: str = "") -> grpc.aio.Channel:
    """A channel to `address` that sends the token on every call and speaks TLS when `security` has it
    (the server checked against the lab CA, under `server_name` when given; this process's certificate
    presented for mutual TLS). Each call also carries the run and job ids of the caller's log context
    (`seal_lab.rpc.callids`). A `dns:///name:port` address spreads calls over every address of the name."""
    security = security or Security()
    token = token_pairs(security.token_value)
    interceptors = metadata_interceptors(lambda: [*token, *outgoing_now()])
    options = channel_options(address, server_name, tls=security.tls is not None)
    if security.tls is not None:
        credentials = channel_credentials(security.tls)
        return grpc.aio.secure_channel(address, credentials, options, interceptors=interceptors)
    return grpc.aio.insecure_channel(address, options, interceptors=interceptors)


async def is_serving(channel: grpc.aio.Channel, service: str = "", timeout: float = 2.0) -> bool:
    stub = health_pb2_grpc.HealthStub(channel)
    try:
        response = await stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout)
    except grpc.aio.AioRpcError:
        return False
    return response.status == health_pb2.HealthCheckResponse.SERVING


async def wait_until_serving(
    address: str, timeout: float, service: str = "", security: Security | None = None
) -> None:
    """Poll the standard health service until SERVING; raise TimeoutError with the address otherwise."""
    deadline = time.monotonic() + timeout
    async with open_channel(address, security) as channel:
        while time.monotonic() < deadline:
            if await is_serving(channel, service):
                return
            await asyncio.sleep(0.25)
    raise TimeoutError(f"{address} did not report SERVING within {timeout:.0f}s")


def is_store_outage(error: grpc.aio.AioRpcError) -> bool:
    """True when a service answered UNAVAILABLE because the object store is down, hanging or full."""
    return _caused_by(error, grpc.StatusCode.UNAVAILABLE, STORE_CAUSE)


def is_busy(error: grpc.aio.AioRpcError) -> bool:
    """True when a service answered RESOURCE_EXHAUSTED because its queue is full (worth waiting for)."""
    return _caused_by(error, grpc.StatusCode.RESOURCE_EXHAUSTED, BUSY_CAUSE)


def _caused_by(error: grpc.aio.AioRpcError, code: grpc.StatusCode, cause: str) -> bool:
    """`error` has status `code` and the service named `cause` in its trailing metadata (grpc_wire.py)."""
    if error.code() != code:
        return False
    return any(key == CAUSE_KEY and value == cause for key, value in error.trailing_metadata() or ())
