"""The one client of an OpenAI-compatible `POST {base_url}/chat/completions` endpoint (vLLM, llama.cpp server,
a hosted API) that every seal-lab service asking one uses: the generator's teacher and the evaluator's judge.

One rule for trying again, whoever asks:
- a timeout or a connection that fails, 408, 429 and 5xx (but 501) are tried again, at most `max_retries`
  times, after the endpoint's `Retry-After` (seconds or an HTTP date) or an exponential back-off with jitter
  (so that clients that failed together do not retry in lockstep); then `Unavailable`, which a caller (the
  coordinator) retries within its own budget;
- a `Retry-After` longer than `max_wait_seconds` fails at once (`Unavailable`, naming the wait and the
  setting), instead of holding the call or asking again too soon;
- any other 4xx is a refusal the same request would get again and fails at once: 401, 403 and 404 as
  `FailedPrecondition` (a setting is wrong: the message names which), the rest as `InvalidArgument`.

Errors say which endpoint (the teacher, the judge), the HTTP status and a short reason, and name the setting
that holds the URL, model or key; they never carry the key (nor a part of it an endpoint quotes back) nor
the URL, whose query may hold a key and which a caller far away has no use for. The warning logged before
each retry names the URL without its query and credentials.

httpx, not the `openai` package: the services already use it, and the tests replace its transport and the
sleep between tries.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from seal_lab.errors import FailedPrecondition, InvalidArgument, Unavailable

log = logging.getLogger(__name__)

_REASON_CHARS = 200


def is_retryable(status: int) -> bool:
    """An answer worth another try: a timeout (408), "too many requests" (429), a server failing or
    overloaded (5xx, but 501: it does not implement the request). Any other 4xx is a refusal that the same
    request would get again."""
    return status in (408, 429) or (status >= 500 and status != 501)


def retry_after_seconds(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds a `Retry-After` header asks to wait (a number of seconds or an HTTP date; a date in the past is
    0); None if absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    return max(0.0, seconds) if math.isfinite(seconds) else None


@dataclass(frozen=True)
class Endpoint:
    """Who is asked, for messages: `role` ("teacher", "judge") and the prefix of the settings that configure
    it (`SEAL_GENERATOR_OPENAI_`: its `BASE_URL`, `MODEL`, `API_KEY`, `MAX_RETRY_WAIT_SECONDS`)."""

    role: str
    settings_prefix: str


@dataclass(frozen=True)
class RetryRule:
    """How often and how long to try again (the rule itself is the module's)."""

    max_retries: int = 4
    max_wait_seconds: float = 30.0
    initial_backoff_seconds: float = 1.0

    def backoff(self, attempt: int) -> float:
        """The wait before try `attempt + 2` without a Retry-After: between half and all of
        `initial * 2**attempt`, at most `max_wait_seconds`."""
        full = self.initial_backoff_seconds * 2**attempt
        return min(self.max_wait_seconds, full * random.uniform(0.5, 1.0))


@dataclass(frozen=True)
class ChatReply:
    """The first choice of a chat completion."""

    text: str | None
    completion_tokens: int
    finish_reason: str | None


def masked(text: str, secret: str | None) -> str:
    """`text` with the key left out: the key itself, and any word holding its first characters (hosted APIs
    quote a refused key back in part, e.g. `sk-proj-abc*****wxyz`)."""
    if not secret:
        return text
    head = secret[: max(4, min(8, len(secret) // 2))]
    return " ".join("***" if head in word else word for word in text.replace(secret, "***").split())


def shown_url(url: httpx.URL) -> str:
    """The URL for a log line: scheme, host, port and path; no credentials, no query."""
    port = f":{url.port}" if url.port else ""
    return f"{url.scheme}://{url.host}{port}{url.path}"


def _status(response: httpx.Response) -> str:
    return f"HTTP {response.status_code} {response.reason_phrase}".rstrip()


class ChatClient:
    """Chat completions from one endpoint with one model. Thread-safe: one client serves concurrent asks (at
    most `max_connections` requests in flight)."""

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str | None,
        endpoint: Endpoint,
        *,
        timeout_seconds: float,
        retry: RetryRule = RetryRule(),
        max_connections: int | None = None,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.model = model
        self.endpoint = endpoint
        self.retry = retry
        self._secret = api_key or None
        self._sleep = sleep
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        pool = {"limits": httpx.Limits(max_connections=max_connections)} if max_connections else {}
        # A query on the base URL (Azure's `?api-version=`) goes on every request, after the path.
        url = httpx.URL(base_url)
        self._client = httpx.Client(
            base_url=str(url.copy_with(query=None)).rstrip("/"),
            params=url.params,
            headers=headers,
            timeout=timeout_seconds,
            transport=transport,
            **pool,
        )
        self._shown = shown_url(self._client.build_request("POST", "/chat/completions").url)

    def complete(self, messages: list[dict[str, str]], **parameters: Any) -> ChatReply:
        """One chat completion of `messages` (with `temperature`, `max_tokens`, ... as the API names them),
        under the module's retry rule."""
        response = self._post({"model": self.model, "messages": messages, **parameters})
        try:
            payload = response.json()
            choice = payload["choices"][0]
            text = choice["message"]["content"]
            if text is not None and not isinstance(text, str):
                raise TypeError(f"content is {type(text).__name__}")
            tokens = int((payload.get("usage") or {}).get("completion_tokens") or 0)
        except (ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
            raise Unavailable(
                f"{self._name} sent an unexpected response: {self._reason(response.text)}"
            ) from exc
        return ChatReply(text, tokens, choice.get("finish_reason"))

    def _post(self, body: dict[str, Any]) -> httpx.Response:
        rule, prefix = self.retry, self.endpoint.settings_prefix
        tries = rule.max_retries + 1
        for attempt in range(tries):
            try:
                response = self._client.post("/chat/completions", json=body)
            except httpx.TransportError as exc:  # str(exc) may name the URL: the type says enough
                how = "did not answer" if isinstance(exc, httpx.TimeoutException) else "unreachable"
                failure, wait = f"{how} ({type(exc).__name__})", None
            else:
                if response.is_success:
                    return response
                if not is_retryable(response.status_code):
                    raise self._refusal(response)
                failure = f"answered {_status(response)}: {self._reason(response.text)}"
                wait = retry_after_seconds(response.headers.get("retry-after"))
                if wait is not None and wait > rule.max_wait_seconds:
                    raise Unavailable(
                        f"{self._name} {failure} and asks to wait {wait:.0f}s, more than "
                        f"{prefix}MAX_RETRY_WAIT_SECONDS={rule.max_wait_seconds:g}"
                    )
            if attempt + 1 == tries:
                break
            delay = rule.backoff(attempt) if wait is None else wait
            log.warning(
                "%s %s %s; retry %d/%d in %.1fs",
                self._name, self._shown, failure, attempt + 1, rule.max_retries, delay,
            )  # fmt: skip
            self._sleep(delay)
        hint = f"; check {prefix}BASE_URL" if failure.startswith("unreachable") else ""
        raise Unavailable(f"{self._name} {failure} (after {tries} tries){hint}")

    @property
    def _name(self) -> str:
        return f"{self.endpoint.role} endpoint"

    def _refusal(self, response: httpx.Response) -> FailedPrecondition | InvalidArgument:
        status, prefix = response.status_code, self.endpoint.settings_prefix
        what = "the API key" if status == 401 else "the request"
        message = f"{self._name} refused {what}: {_status(response)}: {self._reason(response.text)}"
        hints = {
            401: f"check {prefix}API_KEY",
            403: f"check {prefix}API_KEY and the model's access",
            404: f"check {prefix}BASE_URL and {prefix}MODEL",
        }
        if status in hints:
            return FailedPrecondition(f"{message} ({hints[status]})")
        return InvalidArgument(message)

    def _reason(self, text: str) -> str:
        """A short reason from an error body (OpenAI's `{"error": {"message"}}` or the text), the key masked."""
        reason: Any = text
        with contextlib.suppress(ValueError, AttributeError, TypeError):
            error = json.loads(text).get("error")
            if error is not None:
                reason = error.get("message") if isinstance(error, dict) else error
        reason = masked(" ".join(str(reason or "no reason given").split()), self._secret)
        return reason[:_REASON_CHARS] + ("..." if len(reason) > _REASON_CHARS else "")

    def close(self) -> None:
        self._client.close()
