"""The one rule the teacher and judge clients share about trying an HTTP request again."""

from __future__ import annotations

import pytest

from seal_lab.httpretry import is_retryable


@pytest.mark.parametrize(
    ("status", "again"),
    [
        *[(status, True) for status in (408, 429, 500, 502, 503, 504, 599)],
        *[(status, False) for status in (400, 401, 403, 404, 413, 422, 501)],
    ],
)
def test_timeouts_overload_and_server_failures_are_tried_again_refusals_are_not(status, again):
    assert is_retryable(status) is again
