"""The gRPC side of `seal_lab.security`: the server interceptor that checks the bearer token, the client
interceptors that send it, and TLS credentials for servers and channels.

The token travels as `authorization: Bearer <token>` call metadata (the same header the coordinator's HTTP
API takes), over TLS or plaintext alike, so a client interceptor rather than call credentials (which gRPC
sends over secure channels only). The standard health service stays open: container probes and load
balancers ask it without credentials, and it tells them nothing but SERVING or not.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Callable, Iterable
from typing import Any

import grpc

from seal_lab.security import TlsSettings

log = logging.getLogger(__name__)

AUTHORIZATION_KEY = "authorization"
#: Methods anyone may call: the standard health service only.
OPEN_METHOD_PREFIX = "/grpc.health.v1.Health/"
MISSING_TOKEN = "no bearer token: send the shared SEAL_AUTH_TOKEN as 'authorization: Bearer <token>' metadata"
WRONG_TOKEN = "wrong bearer token: this service has another SEAL_AUTH_TOKEN"


def _check(metadata: Any, expected: bytes) -> str | None:
    """None when the metadata carries the expected bearer token, else why not."""
    presented = [
        value for key, value in metadata or () if key == AUTHORIZATION_KEY and isinstance(value, str)
    ]
    if not presented:
        return MISSING_TOKEN
    for value in presented:
        scheme, _, token = value.strip().partition(" ")
        # compare_digest takes the same time wherever the first difference is (bytes: any characters).
        if scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), expected):
            return None
    return WRONG_TOKEN


def _refuse(reason: str) -> Callable[..., Any]:
    async def refuse(request: Any, context: grpc.aio.ServicerContext) -> None:
        log.warning("refused a call from %s: UNAUTHENTICATED (%s)", context.peer(), reason.split(":")[0])
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, reason)

    return refuse


class BearerTokenInterceptor(grpc.aio.ServerInterceptor):
    """Every method but health needs `authorization: Bearer <token>`; any other call is answered
    UNAUTHENTICATED before its request is parsed or its servicer runs."""

    def __init__(self, token: str) -> None:
        self._expected = token.encode()

    async def intercept_service(self, continuation: Callable, handler_call_details: Any) -> Any:
        if handler_call_details.method.startswith(OPEN_METHOD_PREFIX):
            return await continuation(handler_call_details)
        reason = _check(handler_call_details.invocation_metadata, self._expected)
        if reason is None:
            return await continuation(handler_call_details)
        # The refusal has the method's shape (a streaming client expects a stream); no deserializer: the
        # request stays unread bytes. An unknown method is refused the same way, so its absence is no hint.
        handler = await continuation(handler_call_details)
        refuse = _refuse(reason)
        if handler is not None and handler.request_streaming and handler.response_streaming:
            return grpc.stream_stream_rpc_method_handler(refuse)
        if handler is not None and handler.request_streaming:
            return grpc.stream_unary_rpc_method_handler(refuse)
        if handler is not None and handler.response_streaming:
            return grpc.unary_stream_rpc_method_handler(refuse)
        return grpc.unary_unary_rpc_method_handler(refuse)


class _AddsMetadata:
    """Adds `pairs()` to every call's metadata; `pairs` is asked at each call (in the caller's context)."""

    def __init__(self, pairs: Callable[[], Iterable[tuple[str, str]]]) -> None:
        self._pairs = pairs

    def _with_metadata(self, details: grpc.aio.ClientCallDetails) -> grpc.aio.ClientCallDetails:
        metadata = grpc.aio.Metadata(*(tuple(details.metadata) if details.metadata else ()))
        for key, value in self._pairs():
            metadata.add(key, value)
        return details._replace(metadata=metadata)  # a namedtuple


class _UnaryUnary(_AddsMetadata, grpc.aio.UnaryUnaryClientInterceptor):
    async def intercept_unary_unary(self, continuation: Callable, details: Any, request: Any) -> Any:
        return await continuation(self._with_metadata(details), request)


class _UnaryStream(_AddsMetadata, grpc.aio.UnaryStreamClientInterceptor):
    async def intercept_unary_stream(self, continuation: Callable, details: Any, request: Any) -> Any:
        return await continuation(self._with_metadata(details), request)


class _StreamUnary(_AddsMetadata, grpc.aio.StreamUnaryClientInterceptor):
    async def intercept_stream_unary(self, continuation: Callable, details: Any, requests: Any) -> Any:
        return await continuation(self._with_metadata(details), requests)


class _StreamStream(_AddsMetadata, grpc.aio.StreamStreamClientInterceptor):
    async def intercept_stream_stream(self, continuation: Callable, details: Any, requests: Any) -> Any:
        return await continuation(self._with_metadata(details), requests)


def metadata_interceptors(pairs: Callable[[], Iterable[tuple[str, str]]]) -> list[grpc.aio.ClientInterceptor]:
    """Client interceptors that add `pairs()` to every call's metadata (gRPC files an interceptor under one
    kind of call only, hence one per kind)."""
    return [kind(pairs) for kind in (_UnaryUnary, _UnaryStream, _StreamUnary, _StreamStream)]


def token_pairs(token: str | None) -> list[tuple[str, str]]:
    """The metadata that carries `token` (none without one)."""
    return [] if token is None else [(AUTHORIZATION_KEY, f"Bearer {token}")]


def server_credentials(tls: TlsSettings) -> grpc.ServerCredentials:
    """This server's certificate; with `client_auth`, callers must present one signed by the CA."""
    pem = tls.pem
    if pem.cert is None or pem.key is None:
        raise ValueError("a TLS server needs SEAL_TLS_CERT_FILE and SEAL_TLS_KEY_FILE")
    return grpc.ssl_server_credentials(
        [(pem.key, pem.cert)],
        root_certificates=pem.ca if tls.client_auth else None,
        require_client_auth=tls.client_auth,
    )


def channel_credentials(tls: TlsSettings) -> grpc.ChannelCredentials:
    """Check the server against the CA (the system's CAs when none is set); present this process's
    certificate, when it has one, to servers that require one."""
    pem = tls.pem
    return grpc.ssl_channel_credentials(
        root_certificates=pem.ca, private_key=pem.key, certificate_chain=pem.cert
    )
