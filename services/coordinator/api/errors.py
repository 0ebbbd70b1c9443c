"""The API's errors: its own error types (a bad page token, results not ready), the one body every 4xx/5xx
carries, and the FastAPI handlers that send it; the engine's errors (engine/errors.py) reach it as domain
errors and get their status and code here.

Body: `{"code": "run_not_found", "message": "no run 'x'", "detail": ...}`. `code` is for programs (stable,
snake_case), `message` for people (one line, never a trace or a path); `detail` is the message again (what
clients read before `code` existed) or, for a request that failed validation, one object per problem.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from seal_lab.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    SealError,
    StoreUnavailable,
    Unavailable,
)

from ..engine import BudgetExhausted

log = logging.getLogger(__name__)


class ResultsNotReady(FailedPrecondition):
    code = "results_not_ready"


class InvalidPageToken(InvalidArgument):
    code = "invalid_page_token"


#: A domain error's code when its class names none: the first of its classes found here (most specific first).
_CODES_BY_TYPE: tuple[tuple[type[SealError], str], ...] = (
    (BudgetExhausted, "budget_exceeded"),
    (StoreUnavailable, "store_unavailable"),
    (Unavailable, "unavailable"),
    (NotFound, "not_found"),
    (AlreadyExists, "already_exists"),
    (FailedPrecondition, "failed_precondition"),
    (InvalidArgument, "invalid_argument"),
)
#: An HTTP exception's code (FastAPI's and Starlette's own: 401 from the token check, 404 for no route...).
_CODES_BY_STATUS = {
    400: "bad_request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    422: "validation_error",
    429: "busy",
    503: "unavailable",
}


class ValidationProblem(BaseModel):
    """One thing wrong with a request (FastAPI's validation error, without the input it echoes)."""

    loc: list[str | int] = Field(description="where: `body`, `query`, `path` or `header`, then the field")
    msg: str
    type: str


class ApiError(BaseModel):
    """Every error response's body."""

    model_config = {
        "json_schema_extra": {
            "examples": [
                {"code": "run_not_found", "message": "no run 'run-x'", "detail": "no run 'run-x'"},
                {
                    "code": "validation_error",
                    "message": "query.page_size: Input should be less than or equal to 200",
                    "detail": [
                        {
                            "loc": ["query", "page_size"],
                            "msg": "Input should be less than or equal to 200",
                            "type": "less_than_equal",
                        }
                    ],
                },
            ]
        }
    }

    code: str = Field(description="machine-readable, e.g. run_not_found, run_running, validation_error")
    message: str = Field(description="one readable line")
    detail: str | list[ValidationProblem] = Field(
        description="the message again, or for a request that failed validation one entry per problem"
    )


def error_response(
    status: int, code: str, message: str, detail: Any = None, headers: dict[str, str] | None = None
) -> JSONResponse:
    body = {"code": code, "message": message, "detail": message if detail is None else detail}
    return JSONResponse(status_code=status, content=body, headers=headers)


def responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """`responses=` for a route: each status with the error body."""
    return {
        status: {"model": ApiError, "description": _CODES_BY_STATUS.get(status, "")} for status in statuses
    }


def code_of(exc: SealError) -> str:
    own = getattr(type(exc), "code", None)
    if isinstance(own, str):
        return own
    return next((code for kind, code in _CODES_BY_TYPE if isinstance(exc, kind)), "internal")


async def _seal_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, SealError)
    headers = getattr(exc, "headers", None)  # RateLimited's Retry-After
    return error_response(exc.http_status, code_of(exc), exc.message, headers=headers)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    code = _CODES_BY_STATUS.get(exc.status_code, "internal" if exc.status_code >= 500 else "bad_request")
    return error_response(exc.status_code, code, str(exc.detail), headers=exc.headers)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    """One readable clause per problem in `message`, the problems in `detail`; the input is not echoed back
    (it may be huge)."""
    assert isinstance(exc, RequestValidationError)
    problems = [
        ValidationProblem(loc=list(error["loc"]), msg=error["msg"], type=error["type"])
        for error in exc.errors()
    ]
    message = "; ".join(f"{'.'.join(str(p) for p in problem.loc)}: {problem.msg}" for problem in problems)
    return error_response(422, "validation_error", message, [p.model_dump() for p in problems])


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    """A bug: its text may name files, so it stays in the log."""
    log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return error_response(500, "internal", "internal error (the coordinator's log has the details)")


#: exception type -> handler, for `app.add_exception_handler`.
HANDLERS = {
    SealError: _seal_error,
    HTTPException: _http_error,
    RequestValidationError: _validation_error,
    Exception: _unexpected,
}


class HostCheck:
    """Starlette's TrustedHostMiddleware, its refusal (a plain-text 400) sent as the API's error body
    (`invalid_host`). No www redirect: a name not allowed is refused, whatever its spelling."""

    def __init__(self, app: ASGIApp, allowed_hosts: list[str]) -> None:
        self.app = app
        self.allowed_hosts = allowed_hosts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        passed = False

        async def allowed(scope: Scope, receive: Receive, send: Send) -> None:
            nonlocal passed
            passed = True
            await self.app(scope, receive, send)

        async def unless_refused(message: Message) -> None:
            if passed:  # the middleware's own answer is dropped, and replaced below
                await send(message)

        check = TrustedHostMiddleware(allowed, allowed_hosts=self.allowed_hosts, www_redirect=False)
        await check(scope, receive, unless_refused)
        if not passed:
            message = "this coordinator does not answer to that Host (SEAL_COORDINATOR_ALLOWED_HOSTS)"
            await error_response(400, "invalid_host", message)(scope, receive, send)
