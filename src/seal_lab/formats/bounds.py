"""Bounds every service applies to the ids and names callers send, before any work: one place, one message.

The passage format's own limits (context, title, questions, answers) live with the format in `seal_lab.formats.passages`;
store keys have theirs in `seal_lab.store.validate_key`. A refusal names the field and the limit and quotes
none of a value that may be megabytes long.
"""

from __future__ import annotations

from seal_lab.errors import InvalidArgument

#: Ids a caller names its work by (run, job, question, question set): logged, echoed back, kept in records.
MAX_ID_CHARS = 256
#: Provenance and other short labels (an Import's `source`).
MAX_LABEL_CHARS = 200
#: A self-edit format's name.
MAX_FORMAT_CHARS = 40


def check_length(value: str, limit: int, field: str) -> str:
    """`value` unless it is longer than `limit` characters (InvalidArgument naming `field` and the limit)."""
    if len(value) > limit:
        raise InvalidArgument(f"{field} has {len(value):,} characters; the limit is {limit:,}")
    return value
