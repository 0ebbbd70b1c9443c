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


class ConfigurationError(SealError):
    """Settings that cannot work (missing secret, unknown backend); raised at start-up."""
