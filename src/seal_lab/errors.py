"""Domain errors, each mapped once to a gRPC status code and an HTTP status.

Services raise these; the gRPC interceptor and the FastAPI handlers translate them, so no handler has to
know about transport codes and nothing is reported as INTERNAL unless it really is a bug.
"""

from __future__ import annotations

import grpc


class SealError(Exception):
    """Base class: a failure the caller can understand and act on."""

    grpc_code: grpc.StatusCode = grpc.StatusCode.INTERNAL
    http_status: int = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidArgument(SealError):
    grpc_code = grpc.StatusCode.INVALID_ARGUMENT
    http_status = 422


class NotFound(SealError):
    grpc_code = grpc.StatusCode.NOT_FOUND
    http_status = 404


class FailedPrecondition(SealError):
    """The request is well formed but cannot run against this state (e.g. adapter for another base model)."""

    grpc_code = grpc.StatusCode.FAILED_PRECONDITION
    http_status = 409


class Unavailable(SealError):
    grpc_code = grpc.StatusCode.UNAVAILABLE
    http_status = 503


class CallCancelled(SealError):
    """Work stopped because its call ended first (the caller cancelled, its deadline passed, the connection
    dropped): nothing of it is published. Its status rarely reaches anyone (the caller has gone); 499 is
    the HTTP status proxies use for a client that closed its request."""

    grpc_code = grpc.StatusCode.CANCELLED
    http_status = 499


class ConfigurationError(SealError):
    """Settings that cannot work (missing secret, unknown backend); raised at start-up."""


class AlreadyExists(SealError):
    """A write-once key already holds different bytes (an identical rewrite is not an error)."""

    grpc_code = grpc.StatusCode.ALREADY_EXISTS
    http_status = 409

    def __init__(self, message: str, *, key: str = "") -> None:
        super().__init__(message)
        self.key = key


class StoreUnavailable(Unavailable):
    """The object store cannot be reached, timed out, or refused service (an `Unavailable`, so callers that
    retry on Unavailable retry on it too). The message names the store and the action, never a trace."""


class StoreFull(StoreUnavailable):
    """The object store has no space, or the bucket's quota is spent; the message says which write and how much."""


class CorruptObject(SealError):
    """An object exists but cannot be what it must be: JSON that does not parse, content-addressed bytes whose
    sha256 does not match their key."""

    grpc_code = grpc.StatusCode.DATA_LOSS
    http_status = 500

    def __init__(self, message: str, *, key: str) -> None:
        super().__init__(message)
        self.key = key
