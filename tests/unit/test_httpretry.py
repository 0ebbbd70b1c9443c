"""The one rule the teacher and judge clients share about trying an HTTP request again."""

from __future__ import annotations

import pytest

from seal_lab.httpretry import is_retryable


@pytest.mark.parametrize(
    ("status", "again"),
    [(408, True), (429, True), (500, True), (502, True), (503, True), (504, True), (599, True)]
    + [(400, False), (401, False), (403, False), (404, False), (413, False), (422, False), (501, False)],
)
def test_timeouts_overload_and_server_failures_are_tried_again_refusals_are_not(status, again):
    assert is_retryable(status) is again
