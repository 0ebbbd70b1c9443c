"""A run's records in the store: what is written, how it is read back, and what happens to a bad one.

Layout under `runs/<id>/`, every record write-once (the store enforces it):
- `spec.json` and `spec.copy.json`: the request, split and teachers (two copies: the run cannot go on
  without one);
- `jobs/<job>.json`: one per finished job, so a restarted coordinator resumes without redoing it;
- `events/<ns>.json`: retries, errors and status changes that must survive a restart;
- `lease/<epoch>.json`: which coordinator runs it (lease.py);
- `manifest.json`: written last; its presence means the run finished.
A finished run's records are removed together on request (`delete_run`, DELETE /v1/runs/{id}).
A record that cannot be read (a truncated file after a power cut, say) is moved to `quarantine/` with the
reason; the coordinator says so in the run's events and redoes what the record stood for.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from seal_lab.errors import AlreadyExists, StoreUnavailable
from seal_lab.store import QUARANTINE_PREFIX, ObjectStore, read_record
from seal_lab.store.outage import OnRetry, OutagePolicy, call_async

from ..run.records import JobRecord, Manifest, OpenRecord, RunSpec, parse_job_record

log = logging.getLogger(__name__)

_Record = TypeVar("_Record", bound=OpenRecord)

RUNS_PREFIX = "runs"
SPEC = "spec.json"
SPEC_COPY = "spec.copy.json"
MANIFEST = "manifest.json"


class LeaseLost(Exception):
    """Another coordinator holds this run now (its write-once records collide with ours): stop running it."""


def run_key(run_id: str, name: str) -> str:
    return f"{RUNS_PREFIX}/{run_id}/{name}"


def job_key(run_id: str, job_name: str) -> str:
    return run_key(run_id, f"jobs/{job_name}.json")


def run_ids(store: ObjectStore) -> list[str]:
    """Every run with a spec (or only its copy) in the store."""
    ids = {
        key.split("/")[1]
        for key in store.list_keys(f"{RUNS_PREFIX}/")
        if key.count("/") == 2 and key.rsplit("/", 1)[1] in (SPEC, SPEC_COPY)
    }
    return sorted(ids)


def has_spec(store: ObjectStore, run_id: str) -> bool:
    """Blocking: whether the run has a spec (or only its copy): a folder without one holds no run."""
    return store.exists(run_key(run_id, SPEC)) or store.exists(run_key(run_id, SPEC_COPY))


def write_spec(store: ObjectStore, run_id: str, spec: RunSpec) -> None:
    """The copy first: a spec.json that exists always has its copy."""
    store.put_json(run_key(run_id, SPEC_COPY), spec.model_dump())
    store.put_json(run_key(run_id, SPEC), spec.model_dump())


def delete_run(store: ObjectStore, run_id: str) -> None:
    """Blocking. Remove every record under `runs/<id>/` (and those of them moved to quarantine); nothing else (adapters, datasets and the
    evaluation cache are content-addressed and may be shared with other runs). The specs go first: a deletion
    cut short leaves either no run (records without a spec are never listed) or the whole run but spec.json,
    which loads from its copy (never a run without its manifest, that would be resumed)."""
    first = [run_key(run_id, SPEC), run_key(run_id, SPEC_COPY)]
    rest = [k for k in store.list_keys(run_key(run_id, "")) if k not in first]
    moved_aside = store.list_keys(f"{QUARANTINE_PREFIX}/{run_key(run_id, '')}")  # its unreadable records
    for key in first + rest + moved_aside:
        store.delete(key)


@dataclass
class StoredRun:
    """What the store holds for one run, read back with bad records moved aside."""

    run_id: str
    spec: RunSpec | None = None
    jobs: dict[str, JobRecord] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)
    manifest: Manifest | None = None
    #: One line per record moved to quarantine (or repaired), for the run's events.
    problems: list[str] = field(default_factory=list)


def read_run(store: ObjectStore, run_id: str) -> StoredRun:
    """Blocking. Never raises for a bad record (only StoreUnavailable when the store is away)."""
    stored = StoredRun(run_id)
    stored.spec = _read_spec(store, run_id, stored.problems)
    for key in store.list_keys(run_key(run_id, "jobs/")):
        name = key.rsplit("/", 1)[1].removesuffix(".json")
        parsed: dict[str, JobRecord] = {}
        _read_record(store, key, _job_record(name, parsed), stored.problems, "its job will be redone")
        if name in parsed:
            stored.jobs[name] = parsed[name]
    for key in store.list_keys(run_key(run_id, "events/")):
        record = _read_record(store, key, _expected(_is_event), stored.problems, "the event is dropped")
        if record is not None:
            stored.events.append(record)
    if store.exists(run_key(run_id, MANIFEST)):
        parsed_manifest: list[Manifest] = []
        _read_record(
            store,
            run_key(run_id, MANIFEST),
            _parsed(Manifest, parsed_manifest),
            stored.problems,
            "the run will finish again",
        )
        stored.manifest = parsed_manifest[0] if parsed_manifest else None
    return stored


def _job_record(name: str, parsed: dict[str, JobRecord]) -> Callable[[Any], str | None]:
    """A job record's check: it parses as its job's record (into `parsed[name]`), else why not."""

    def problem(record: Any) -> str | None:
        try:
            parsed[name] = parse_job_record(name, record)
        except ValueError as exc:
            return f"not the record of job {name}: {_first_line(exc)}"
        return None

    return problem


def _first_line(exc: ValueError) -> str:
    errors = exc.errors() if isinstance(exc, ValidationError) else None
    if errors:
        where = ".".join(str(part) for part in errors[0]["loc"])
        return f"{where}: {errors[0]['msg']}" if where else errors[0]["msg"]
    return str(exc)


def _read_record(
    store: ObjectStore, key: str, problem: Callable[[Any], str | None], problems: list[str], consequence: str
) -> Any:
    read = read_record(store, key, problem)
    if read.problem:
        problems.append(f"unreadable record {key} ({read.problem}) moved to {read.moved_to}; {consequence}")
    return read.record


def _expected(valid: Callable[[Any], bool]) -> Callable[[Any], str | None]:
    return lambda record: None if valid(record) else "not the record expected there"


def _read_spec(store: ObjectStore, run_id: str, problems: list[str]) -> RunSpec | None:
    """spec.json, else its copy (then spec.json is restored from the copy); None when both are lost."""
    good: RunSpec | None = None
    bad: list[str] = []
    for name in (SPEC, SPEC_COPY):
        key = run_key(run_id, name)
        parsed: list[RunSpec] = []
        read = read_record(store, key, _parsed(RunSpec, parsed, "not a run spec"))
        if read.problem:
            bad.append(name)
            problems.append(f"unreadable record {key} ({read.problem}) moved to {read.moved_to}")
        elif parsed:
            good = good or parsed[0]
    if good is not None:
        for name in bad:
            with contextlib.suppress(AlreadyExists):
                store.put_json(run_key(run_id, name), good.model_dump())
            problems.append(f"{run_key(run_id, name)} restored from the other copy")
    return good


def _parsed(
    model: type[_Record], into: list[_Record], problem: str = "not the record expected there"
) -> Callable[[Any], str | None]:
    """A record's check: it is a JSON object that reads as `model` (appended to `into`), else `problem`."""

    def check(record: Any) -> str | None:
        if not isinstance(record, dict):
            return problem
        try:
            into.append(model.model_validate(record))
        except ValidationError:
            return problem
        return None

    return check


def _is_event(record: Any) -> bool:
    return (
        isinstance(record, dict)
        and isinstance(record.get("kind"), str)
        and isinstance(record.get("message"), str)
    )


class RecordWriter:
    """The coordinator's own writes, waited out like service calls while the store is away.

    Job records and manifests are awaited by the run (it pauses until they are stored). Events are queued
    and written in order by one background task, so emitting an event never blocks or fails a run.
    """

    def __init__(self, store: ObjectStore, outage: OutagePolicy) -> None:
        self.store = store
        self.outage = outage
        self._queue: asyncio.Queue[tuple[str, BaseModel]] = asyncio.Queue()
        self._task: asyncio.Task | None = None

    async def put(self, key: str, record: BaseModel, on_retry: OnRetry | None = None) -> None:
        """Write-once; a different record already there means another coordinator is running this run."""
        data = record.model_dump()
        try:
            await call_async(lambda: self.store.put_json(key, data), self.outage, f"writing {key}", on_retry)
        except AlreadyExists:
            raise LeaseLost(f"{key} was written by another coordinator") from None

    def queue_event(self, key: str, record: BaseModel) -> None:
        self._queue.put_nowait((key, record))
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._drain(), name="event-writer")

    async def _drain(self) -> None:
        forever = dataclasses.replace(self.outage, max_seconds=math.inf)
        while not self._queue.empty():
            key, record = self._queue.get_nowait()
            try:
                data = record.model_dump()
                await call_async(lambda k=key, d=data: self.store.put_json(k, d), forever, f"writing {key}")
            except AlreadyExists:  # a retried write that had landed with other bytes: the first one stands
                log.warning("event %s already stored", key)
            except Exception:
                log.exception("could not store event %s", key)

    async def settle(self, timeout: float) -> None:
        """Give the events queued so far up to `timeout` seconds to reach the store (nothing is cancelled)."""
        if self._task is not None and not self._task.done():
            await asyncio.wait({self._task}, timeout=timeout)

    async def flush(self, timeout: float) -> None:
        """At shutdown: give queued events a moment to reach the store (the rest are lost with the process)."""
        if self._task is not None and not self._task.done():
            with contextlib.suppress(TimeoutError, StoreUnavailable):
                await asyncio.wait_for(asyncio.shield(self._task), timeout)
            self._task.cancel()
