"""Pages of `GET /v1/runs`: newest first, cut by an opaque token that names the last run of the page before.

The token is URL-safe base64 of `[created_at, run_id]`, the sort key of that run: the next page starts
strictly after it, so runs created meanwhile (newer, so before it) neither shift nor repeat a page.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import json
from collections.abc import Callable, Iterable

from ..run.schemas import RunSummary
from .errors import InvalidPageToken

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 200

SortKey = tuple[float, str]


def _key(run: RunSummary) -> SortKey:
    return (run.created_at, run.id)


def encode_token(key: SortKey) -> str:
    return base64.urlsafe_b64encode(json.dumps(list(key)).encode()).decode().rstrip("=")


def decode_token(token: str) -> SortKey:
    """The sort key a token names; InvalidPageToken (422) for anything this module did not write."""
    try:
        raw = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    except (ValueError, binascii.Error):
        raw = None
    if (
        not isinstance(raw, list)
        or len(raw) != 2
        or not isinstance(raw[0], int | float)
        or isinstance(raw[0], bool)
        or not isinstance(raw[1], str)
    ):
        raise InvalidPageToken("page_token is not one this coordinator gave out (pass next_page_token as is)")
    return (float(raw[0]), raw[1])


def page(
    runs: Callable[[SortKey | None], Iterable[RunSummary]], size: int, token: str | None, status: str | None
) -> tuple[list[RunSummary], str | None]:
    """One page (with `status`, if given), newest first, and the token of the next (None: last). `runs(before)`
    yields the runs newest first from before `before` on (RunManager.summaries): a page reads its own runs,
    and those of other statuses between them, not every run."""
    after = decode_token(token) if token else None
    chosen = list(
        itertools.islice(
            (
                r
                for r in runs(after)
                if (status is None or r.status == status) and (after is None or _key(r) < after)
            ),
            size + 1,
        )
    )
    if len(chosen) <= size:
        return chosen, None
    return chosen[:size], encode_token(_key(chosen[size - 1]))
