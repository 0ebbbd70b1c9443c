"""What every seal-lab client of an HTTP endpoint (the generator's OpenAI-compatible teacher, the evaluator's
judge) agrees on about trying a request again: which answers are worth another try, and how long the server
asked to wait."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime


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
