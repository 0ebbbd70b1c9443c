"""A run's request, checked before anything is created: each refusal is a 422 (InvalidArgument) that names
the limit, so a run that cannot work never starts, and never fails, or retries, hours later.

In order: how many passages are sent (before any is parsed), the teachers' completions, then, once parsed,
the store keys the request names and the size of every gRPC message the run will send.
"""

from __future__ import annotations

from typing import Any

from seal_lab.errors import InvalidArgument
from seal_lab.formats.adapters import check_adapter_present
from seal_lab.formats.directive import DirectiveLimits
from seal_lab.formats.passages import retention_questions
from seal_lab.rpc.wire import MAX_MESSAGE_BYTES
from seal_lab.store import ObjectStore
from seal_lab.store.outage import ONCE, call_async

from ..run.limits import MAX_TEACHER_COMPLETION_CHARS
from ..run.schemas import RunCreate
from . import convert
from .state import RunState

#: The longest adapter key a run passes on (`adapters/<sha256>`), for sizing Evaluate requests.
_ADAPTER_KEY = "adapters/" + "0" * 64


def check_counts(body: RunCreate, max_passages: int) -> None:
    """Before parsing: every passage sent (training and held-out) counts against the run's cap; `limit`
    picks among them afterwards and cannot lift it (send only the passages to use: the CLI does)."""
    count = len(body.passages or []) + len(body.heldout_passages or [])
    if count > max_passages:
        raise InvalidArgument(
            f"{count} passages sent (training and held-out); this coordinator takes at most {max_passages} "
            "per run (SEAL_COORDINATOR_MAX_PASSAGES_PER_RUN), whatever `limit` says"
        )


def check_teachers(body: RunCreate) -> None:
    """Each teacher's completion that would be imported fits what the generator imports."""
    for teacher in body.teachers:
        for number, entry in enumerate(teacher.passages):
            completions = entry.get("completions") if isinstance(entry, dict) else None
            if not isinstance(completions, list) or teacher.completion_index >= len(completions):
                continue  # matching (policy.py) says what is wrong with the entry, or skips it
            chosen = completions[teacher.completion_index]
            if isinstance(chosen, str) and len(chosen) > MAX_TEACHER_COMPLETION_CHARS:
                raise InvalidArgument(
                    f"teachers[{teacher.name}].passages[{number}]: completion {teacher.completion_index} has "
                    f"{len(chosen):,} characters; the generator imports at most {MAX_TEACHER_COMPLETION_CHARS:,}"
                )


async def check_store_keys(store: ObjectStore, body: RunCreate) -> None:
    """The keys a client names must be there: the policy adapter (its form was checked by the schema)."""
    key = body.config.policy_adapter_key
    if key:
        await call_async(lambda: check_adapter_present(store, key), ONCE, "checking the policy adapter")


def check_message_sizes(run: RunState, adapters_per_call: int) -> None:
    """Every request the run will send fits in one gRPC message: one over the limit fails the same way at
    every try, so it is refused here. Sized with the messages themselves (convert.py builds them)."""
    config, limits = run.config, DirectiveLimits()
    keys = ["", *[_ADAPTER_KEY] * adapters_per_call]
    retention = retention_questions(config.retention_questions) if config.retention else None
    formats = dict.fromkeys([*config.formats, config.heldout_edit_format])
    for passage in run.passages:
        requests: list[tuple[str, Any]] = [
            (
                "Generate",
                convert.generate_request(
                    run.id, config, passage, f, 0, limits, config.policy_adapter_key, config.k
                ),
            )
            for f in formats
        ]
        requests.append(("Evaluate", convert.evaluate_request(run.id, config, passage, keys, None)))
        if retention is not None:
            requests.append(("Evaluate", convert.evaluate_request(run.id, config, passage, keys, retention)))
        for name, (teacher_format, completions) in run.teachers.items():
            if passage.passage_id in completions:
                request = convert.import_request(
                    run.id,
                    config,
                    passage,
                    teacher_format,
                    [completions[passage.passage_id]],
                    f"teacher:{name}",
                    limits,
                )
                requests.append(("Import", request))
        for rpc, message in requests:
            size = message.ByteSize()
            if size > MAX_MESSAGE_BYTES:
                raise InvalidArgument(
                    f"passage {passage.passage_id!r}: its {rpc} request would be {size:,} bytes, over the "
                    f"{MAX_MESSAGE_BYTES:,}-byte limit of a gRPC message"
                )
