"""The request body's size limit at the API's door (SEAL_COORDINATOR_MAX_BODY_BYTES; the default is
run/limits.py's `DEFAULT_MAX_BODY_BYTES`).

`BodySizeLimit` is a pure ASGI middleware: it answers 413 when `Content-Length` says the body is too large,
and counts the bytes of a body sent without one (chunked), so nothing past the limit is ever read.
"""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class BodyTooLarge(HTTPException):
    """Raised from `receive` when a streamed body passes the limit; FastAPI re-raises HTTPExceptions from
    body reading and its exception middleware answers them, so the client gets the 413 with its message."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, too_large_message(limit))


def too_large_message(limit: int) -> str:
    return (
        f"request body is larger than this coordinator's limit of {limit:,} bytes "
        "(SEAL_COORDINATOR_MAX_BODY_BYTES)"
    )


class BodySizeLimit:
    """Refuse HTTP request bodies over `max_bytes` with 413, by Content-Length or by counting."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            await _answer_413(scope, receive, send, self.max_bytes)
            return
        received = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLarge(self.max_bytes)
            return message

        async def watching_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, watching_send)
        except BodyTooLarge:
            if started:  # the app answered before reading it all; nothing more can be said
                raise
            await _answer_413(scope, receive, send, self.max_bytes)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def _answer_413(scope: Scope, receive: Receive, send: Send, limit: int) -> None:
    message = too_large_message(limit)  # the API's error body (errors.py)
    body = {"code": "payload_too_large", "message": message, "detail": message}
    response = JSONResponse(body, status_code=413, headers={"connection": "close"})
    await response(scope, receive, send)
