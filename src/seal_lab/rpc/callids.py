"""Run and job ids in gRPC call metadata, so `grep run-...` joins the logs of every process.

A client (the coordinator) sends the ids its own log lines carry (`seal_lab.logging.bind_context`) as
`x-seal-run-id` and `x-seal-job-id`; a server binds what it receives to every log line of that call
(`seal_lab.serve.server`). Ids are short tokens: a value that is too long or holds other characters is
dropped with a warning that does not echo it (it could be anything a caller sent), never an error.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from typing import Any

from seal_lab.logging import current_context

log = logging.getLogger(__name__)

RUN_ID_KEY = "x-seal-run-id"
JOB_ID_KEY = "x-seal-job-id"
#: Metadata key -> the log field it fills.
FIELDS = {RUN_ID_KEY: "run_id", JOB_ID_KEY: "job_id"}
MAX_ID_LENGTH = 200
#: Run ids (`run-20261129-...`), job names (`0000-r1-train-...`) and the trainer's `run/passage/label`.
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/@+=-]*")
RULE = f"at most {MAX_ID_LENGTH} letters, digits and ._:/@+=- starting with a letter or digit"


def valid_id(value: object) -> bool:
    return isinstance(value, str) and len(value) <= MAX_ID_LENGTH and _ID.fullmatch(value) is not None


def outgoing(fields: Mapping[str, str]) -> list[tuple[str, str]]:
    """The metadata for the ids among `fields` (a log context); an invalid one is left out with a warning."""
    pairs = []
    for key, field in FIELDS.items():
        value = fields.get(field)
        if not value:
            continue
        if valid_id(value):
            pairs.append((key, value))
        else:
            log.warning("not sending %s: not an id (%s)", key, RULE)
    return pairs


def outgoing_now() -> list[tuple[str, str]]:
    """The ids bound in the calling task's log context, as call metadata."""
    return outgoing(current_context())


def incoming(metadata: Iterable[tuple[str, Any]] | None) -> dict[str, str]:
    """The log fields (`run_id`, `job_id`) a call's metadata carries; a bad value is dropped with a warning."""
    fields: dict[str, str] = {}
    for key, value in metadata or ():
        field = FIELDS.get(key)
        if field is None or field in fields:
            continue
        if valid_id(value):
            fields[field] = value
        else:
            log.warning("ignored the call's %s metadata: not an id (%s)", key, RULE)
    return fields
