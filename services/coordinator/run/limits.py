"""What the coordinator accepts at its door, in one place: the size of a request body and of its parts.

The limits of a passage record (title, id, questions, answers) belong to its format and live with it, in
`seal_lab.data`; the schemas (schemas.py) and the run-creation checks (admission.py) use the names here.
A request over a limit is refused before any work starts: 413 for a body too large, 422 for a part.

`BodySizeLimit` is a pure ASGI middleware: it answers 413 when `Content-Length` says the body is too large,
and counts the bytes of a body sent without one (chunked), so nothing past the limit is ever read.
"""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

#: A request body: 16 MiB holds the 500 passages a run may have at SQuAD's sizes many times over
#: (SEAL_COORDINATOR_MAX_BODY_BYTES changes it).
DEFAULT_MAX_BODY_BYTES = 16 * 1024 * 1024
#: Passages in one request, before any is parsed: above every coordinator's own `max_passages_per_run`
#: (a setting, checked next, before parsing too).
MAX_PASSAGES_PER_REQUEST = 5_000
#: Imported self-edits of one teacher, and the length of one completion: the generator refuses an Import
#: output over 50,000 characters (services/generator/server.py MAX_IMPORT_CHARS; a test keeps them equal).
MAX_TEACHER_PASSAGES = MAX_PASSAGES_PER_REQUEST
MAX_TEACHER_COMPLETIONS = 64
MAX_TEACHER_COMPLETION_CHARS = 50_000
#: A self-edit format's name (the generator's are short words like `implications`).
FORMAT_NAME_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,39}$"
#: A run's name, shown in lists.
MAX_RUN_NAME_CHARS = 200


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
    message = too_large_message(limit)  # the API's error body (apierrors.py)
    body = {"code": "payload_too_large", "message": message, "detail": message}
    response = JSONResponse(body, status_code=413, headers={"connection": "close"})
    await response(scope, receive, send)
