"""The one OpenAI-compatible client the teacher and the judge share (seal_lab.openai_client): one rule for
trying again, errors that name the endpoint and its settings but never the key or the URL. Over httpx's
MockTransport."""

from __future__ import annotations

import logging

import httpx
import pytest

from seal_lab.errors import FailedPrecondition, InvalidArgument, Unavailable
from seal_lab.openai_client import ChatClient, Endpoint, RetryRule, is_retryable, masked
from services.evaluator.judge import JUDGE
from services.generator.backends import TEACHER

KEY = "sk-proj-0123456789abcdef"
URL = "https://llm.example/v1?api-key=query-secret"
OK = {
    "choices": [{"message": {"content": "yes"}, "finish_reason": "stop"}],
    "usage": {"completion_tokens": 1},
}


@pytest.mark.parametrize(
    ("status", "again"),
    [
        *[(status, True) for status in (408, 429, 500, 502, 503, 504, 599)],
        *[(status, False) for status in (400, 401, 403, 404, 413, 422, 501)],
    ],
)
def test_timeouts_overload_and_server_failures_are_tried_again_refusals_are_not(status, again):
    assert is_retryable(status) is again


def client(
    answers: list[httpx.Response | Exception], endpoint: Endpoint = TEACHER, **rule: float
) -> tuple[ChatClient, list[httpx.Request], list[float]]:
    """A client whose endpoint answers with `answers` in turn (then 200), recording requests and waits."""
    seen: list[httpx.Request] = []
    slept: list[float] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if not answers:
            return httpx.Response(200, json=OK)
        next_answer = answers.pop(0)
        if isinstance(next_answer, Exception):
            raise next_answer
        return next_answer

    made = ChatClient(
        URL,
        "m",
        KEY,
        endpoint,
        timeout_seconds=5,
        retry=RetryRule(**rule),  # type: ignore[arg-type]
        transport=httpx.MockTransport(answer),
        sleep=slept.append,
    )
    return made, seen, slept


def ask(chat: ChatClient) -> str | None:
    return chat.complete([{"role": "user", "content": "?"}], temperature=0).text


@pytest.mark.parametrize("endpoint", [TEACHER, JUDGE], ids=lambda e: e.role)
def test_teacher_and_judge_retry_by_the_same_rule(endpoint):
    failures: list[httpx.Response | Exception] = [
        httpx.Response(503),
        httpx.ConnectError("refused"),
        httpx.Response(429, headers={"Retry-After": "3"}),
    ]
    chat, seen, slept = client(failures, endpoint, initial_backoff_seconds=1.0)
    assert ask(chat) == "yes" and len(seen) == 4
    # Back-off with jitter: try n waits between half and all of 2**n seconds; a Retry-After is waited as given.
    assert 0.5 <= slept[0] <= 1.0 and 1.0 <= slept[1] <= 2.0 and slept[2] == 3.0
    assert seen[0].url == "https://llm.example/v1/chat/completions?api-key=query-secret"  # the query last
    body = seen[0].read()
    assert b'"model":"m"' in body.replace(b" ", b"") and seen[0].headers["authorization"] == f"Bearer {KEY}"


@pytest.mark.parametrize("endpoint", [TEACHER, JUDGE], ids=lambda e: e.role)
def test_giving_up_names_the_endpoint_the_status_and_the_tries_never_the_url(endpoint):
    chat, seen, _ = client([httpx.Response(502, text=f"bad gateway for {KEY}")] * 3, endpoint, max_retries=2)
    with pytest.raises(Unavailable) as failed:
        ask(chat)
    message = failed.value.message
    assert message.startswith(f"{endpoint.role} endpoint answered HTTP 502 Bad Gateway: bad gateway for ***")
    assert message.endswith("(after 3 tries)") and len(seen) == 3
    assert "llm.example" not in message and "query-secret" not in message and KEY not in message


def test_a_timeout_is_tried_again_then_said_so_with_the_setting_for_an_unreachable_one():
    chat, _, slept = client([httpx.ReadTimeout("slow")] * 2, max_retries=1)
    with pytest.raises(
        Unavailable, match=r"teacher endpoint did not answer \(ReadTimeout\) \(after 2 tries\)$"
    ):
        ask(chat)
    chat, _, _ = client([httpx.ConnectError("no")] * 2, JUDGE, max_retries=1)
    with pytest.raises(
        Unavailable, match=r"unreachable \(ConnectError\) .*check SEAL_EVALUATOR_JUDGE_BASE_URL"
    ):
        ask(chat)
    assert len(slept) == 1


def test_a_retry_after_beyond_the_limit_fails_at_once_naming_the_setting():
    chat, seen, slept = client(
        [httpx.Response(429, headers={"Retry-After": "600"})], JUDGE, max_wait_seconds=30
    )
    with pytest.raises(
        Unavailable, match="asks to wait 600s, more than SEAL_EVALUATOR_JUDGE_MAX_RETRY_WAIT_SECONDS=30"
    ):
        ask(chat)
    assert len(seen) == 1 and slept == []


@pytest.mark.parametrize(
    ("status", "kind", "says"),
    [
        (401, FailedPrecondition, "refused the API key: HTTP 401 Unauthorized"),
        (403, FailedPrecondition, "check SEAL_GENERATOR_OPENAI_API_KEY and the model's access"),
        (404, FailedPrecondition, "check SEAL_GENERATOR_OPENAI_BASE_URL and SEAL_GENERATOR_OPENAI_MODEL"),
        (400, InvalidArgument, "refused the request: HTTP 400 Bad Request"),
    ],
)
def test_a_refusal_fails_at_once_and_a_key_quoted_back_in_part_is_masked(status, kind, says):
    quoted = {"error": {"message": "Incorrect API key provided: sk-proj-01***********cdef."}}
    chat, seen, slept = client([httpx.Response(status, json=quoted)])
    with pytest.raises(kind) as refused:
        ask(chat)
    assert says in refused.value.message and "Incorrect API key provided: ***" in refused.value.message
    assert "sk-proj" not in refused.value.message and len(seen) == 1 and slept == []


def test_an_unexpected_body_is_unavailable_and_a_missing_reply_is_none():
    chat, _, _ = client([httpx.Response(200, json={"choices": []})])
    with pytest.raises(Unavailable, match="teacher endpoint sent an unexpected response"):
        ask(chat)
    empty = {"choices": [{"message": {"content": None}, "finish_reason": "length"}]}
    chat, _, _ = client([httpx.Response(200, json=empty)])
    reply = chat.complete([{"role": "user", "content": "?"}])
    assert (reply.text, reply.completion_tokens, reply.finish_reason) == (None, 0, "length")


def test_the_retry_warning_names_the_url_without_its_query(caplog):
    chat, _, _ = client([httpx.Response(503)])
    with caplog.at_level(logging.WARNING, logger="seal_lab.openai_client"):
        ask(chat)
    (line,) = [r.getMessage() for r in caplog.records]
    assert "teacher endpoint https://llm.example/v1/chat/completions answered HTTP 503" in line
    assert "query-secret" not in line and KEY not in line


def test_masked_leaves_other_words_alone():
    assert masked("key sk-proj-0123****cdef is wrong", KEY) == "key *** is wrong"
    assert masked(f"bad {KEY}!", KEY) == "bad ***!"
    assert masked("nothing secret here", None) == "nothing secret here"
