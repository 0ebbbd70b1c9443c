"""The OpenAI-compatible teacher's errors mean what they say (issue 12, item 5): a 4xx is the settings' or the
request's fault and fails at once with its status and reason (no key, no URL); 429 and 5xx are tried again
after the teacher's Retry-After. Over httpx's MockTransport (the loopback stub is tests/service's)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest

from seal_lab.errors import FailedPrecondition, InvalidArgument, SealError, Unavailable
from seal_lab.formats.directive import DirectiveLimits
from seal_lab.openai_client import retry_after_seconds
from services.generator.backends import OpenAIBackend, Sampling

KEY = "sk-secret-teacher-key-1234"
BASE_URL = "https://teacher.example/v1?api-key=query-secret"
OK = {
    "choices": [{"message": {"content": "1. A fact.\nTraining: epochs=2"}}],
    "usage": {"completion_tokens": 7},
}


class Teacher:
    """Answers each request with the next of `answers` (then 200), recording what it was sent."""

    def __init__(self, *answers: httpx.Response) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []
        self.slept: list[float] = []

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.answers.pop(0) if self.answers else httpx.Response(200, json=OK)

    def backend(self, **options: object) -> OpenAIBackend:
        return OpenAIBackend(
            BASE_URL,
            "teacher-model",
            KEY,
            timeout_seconds=5,
            transport=httpx.MockTransport(self.handle),
            sleep=self.slept.append,
            **options,  # type: ignore[arg-type]
        )


def write(backend: OpenAIBackend) -> list[str]:
    sampling = Sampling(temperature=0.5, top_p=0.9, max_new_tokens=64, seed=1)
    return [edit.text for edit in backend.write("Passage.", 1, sampling, "", DirectiveLimits())]


def error(status: int, message: str = "", **headers: str) -> httpx.Response:
    body = {"error": {"message": message or f"status {status}", "type": "invalid_request_error"}}
    return httpx.Response(status, json=body, headers=headers)


@pytest.mark.parametrize(
    ("status", "kind", "hint"),
    [
        (400, InvalidArgument, "HTTP 400 Bad Request"),
        (401, FailedPrecondition, "check SEAL_GENERATOR_OPENAI_API_KEY"),
        (403, FailedPrecondition, "check SEAL_GENERATOR_OPENAI_API_KEY"),
        (404, FailedPrecondition, "check SEAL_GENERATOR_OPENAI_BASE_URL"),
        (422, InvalidArgument, "HTTP 422 Unprocessable"),
    ],
)
def test_a_4xx_fails_at_once_with_its_status_and_reason(status, kind, hint):
    teacher = Teacher(error(status, f"Incorrect API key provided: {KEY}"))
    with pytest.raises(SealError) as refused:
        write(teacher.backend())
    assert type(refused.value) is kind
    message = refused.value.message
    assert hint in message and f"HTTP {status}" in message and "Incorrect API key provided: ***" in message
    assert KEY not in message and "query-secret" not in message and "teacher.example" not in message
    assert len(teacher.requests) == 1 and teacher.slept == []


def test_a_429_waits_the_teachers_retry_after_then_succeeds():
    teacher = Teacher(error(429, **{"Retry-After": "7"}), error(503, **{"Retry-After": "2"}))
    assert write(teacher.backend()) == [OK["choices"][0]["message"]["content"]]
    assert len(teacher.requests) == 3 and teacher.slept == [7.0, 2.0]


def test_a_retry_after_beyond_the_limit_fails_at_once_as_unavailable():
    # The judge's rule too (seal_lab.openai_client): asking again sooner than the teacher said gets another 429.
    teacher = Teacher(error(429, **{"Retry-After": "86400"}))
    with pytest.raises(Unavailable) as failed:
        write(teacher.backend(max_retry_wait_seconds=30))
    assert "asks to wait 86400s" in failed.value.message
    assert "SEAL_GENERATOR_OPENAI_MAX_RETRY_WAIT_SECONDS=30" in failed.value.message
    assert len(teacher.requests) == 1 and teacher.slept == []


def test_5xx_without_a_retry_after_backs_off_with_jitter_then_gives_up_unavailable():
    teacher = Teacher(*[error(502)] * 5)
    with pytest.raises(Unavailable) as failed:
        write(teacher.backend(max_retries=3, initial_backoff_seconds=1.0))
    assert "HTTP 502 Bad Gateway" in failed.value.message and "after 4 tries" in failed.value.message
    assert len(teacher.requests) == 4 and len(teacher.slept) == 3
    assert all(0 <= wait <= 2**n for n, wait in enumerate(teacher.slept))


def test_an_unreachable_teacher_is_unavailable_without_its_url():
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError(f"cannot connect to {request.url}", request=request)

    backend = OpenAIBackend(
        BASE_URL, "m", KEY, 5, transport=httpx.MockTransport(refuse), sleep=lambda _: None, max_retries=1
    )
    with pytest.raises(Unavailable) as failed:
        write(backend)
    assert "unreachable (ConnectError)" in failed.value.message
    assert "query-secret" not in failed.value.message and "teacher.example" not in failed.value.message


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("5", lambda: 5.0),
        ("0.5", lambda: 0.5),
        ("-3", lambda: 0.0),
        ("soon", lambda: None),
        ("", lambda: None),
        (None, lambda: None),
        ("nan", lambda: None),
    ],
)
def test_retry_after_is_read_in_seconds(header: str | None, expected: Callable[[], float | None]):
    assert retry_after_seconds(header) == expected()


def test_retry_after_as_an_http_date():
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=120), usegmt=True)
    assert 100 < retry_after_seconds(later) <= 120  # type: ignore[operator]
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # in the past: now
