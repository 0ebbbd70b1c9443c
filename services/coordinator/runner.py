"""The inner loop, run by the coordinator: baseline -> K self-edits -> K adapters -> scores -> reward -> best.

Every finished job is written to the store as a write-once record (records.py), so a restarted coordinator
resumes an unfinished run without redoing finished jobs. The run's manifest is written last.
A service that is down is retried with backoff and shows up in the run's events; a request a service
refuses (bad input) fails that job only, and the rest of the run goes on. When the object store is away
(down, hanging, full) the run pauses, without counting it against any service, and goes on when it is
back. A lease (lease.py) makes sure one coordinator runs a run, even when several share the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import grpc
from pydantic import ValidationError

from seal.v1 import common_pb2, evaluator_pb2, generator_pb2, trainer_pb2
from seal_lab.data import (
    Passage,
    Question,
    demo_passages,
    parse_passages,
    passages_to_json,
    retention_questions,
)
from seal_lab.directive import Directive, DirectiveLimits, directive_source_name, epochs_mean_epochs
from seal_lab.errors import FailedPrecondition, InvalidArgument, NotFound, StoreUnavailable, Unavailable
from seal_lab.grpc_client import RETRYABLE_CODES, is_store_outage
from seal_lab.logging import bind_context
from seal_lab.outage import ONCE, OutagePolicy, call_async, wait_for_store
from seal_lab.runtime import runtime_versions
from seal_lab.store import ObjectStore

from .clients import ServiceClients
from .lease import Lease, Leases, default_owner
from .policy import build_policy_dataset, match_teacher_completions
from .records import MANIFEST, LeaseLost, RecordWriter, job_key, read_run, run_ids, run_key, write_spec
from .results import (
    REWARD_SEED_STRIDE,
    attach_examples,
    build_results,
    round_passages,
    round_stage,
    seed_suffix,
)
from .schemas import RunConfig, RunCreate, RunDetail, RunEvent, RunSummary
from .settings import CoordinatorSettings

log = logging.getLogger(__name__)

MAX_EVENTS_IN_MEMORY = 2000


class JobFailed(Exception):
    """A service refused a job (bad input, foreign adapter...): that job fails, the run goes on."""


class ServiceCallFailed(Exception):
    """A gRPC call that failed, with the address of the service that failed it (to route a retry elsewhere)."""

    def __init__(self, error: grpc.aio.AioRpcError, address: str) -> None:
        super().__init__(f"{address}: {error.code().name}")
        self.error = error
        self.address = address


class RunInterrupted(Exception):
    """A service stayed unreachable past the retry budget: the run stops and can be resumed."""


def new_run_id() -> str:
    return f"run-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}-{secrets.token_hex(3)}"


@dataclass
class RunState:
    id: str
    name: str
    config: RunConfig
    passages: list[Passage]
    created_at: float
    status: str = "queued"
    updated_at: float = 0.0
    error: str = ""
    current: str = ""
    jobs: dict[str, dict[str, Any]] = field(default_factory=dict)
    events: list[RunEvent] = field(default_factory=list)
    services: dict[str, Any] = field(default_factory=dict)
    results: dict[str, Any] | None = None
    retries: int = 0
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    heldout_ids: frozenset[str] = frozenset()
    # teacher name -> (format, {passage_id: completion}) for the held-out passages it covers
    teachers: dict[str, tuple[str, dict[str, str]]] = field(default_factory=dict)
    round: int = 0
    policy_adapter_key: str = ""
    lease: Lease | None = None
    #: Why this coordinator cannot run this run at all (its spec is lost, or a newer seal-lab wrote it).
    unrunnable: str = ""
    #: Records found unreadable when the run was loaded (moved to quarantine), not yet told in its events.
    load_problems: list[str] = field(default_factory=list)

    @property
    def train_indices(self) -> list[int]:
        return [i for i, p in enumerate(self.passages) if p.passage_id not in self.heldout_ids]

    @property
    def heldout_indices(self) -> list[int]:
        return [i for i, p in enumerate(self.passages) if p.passage_id in self.heldout_ids]

    @property
    def jobs_total(self) -> int:
        config = self.config
        # per round and format: generate + K trainings (times the directive trials); then evaluate, retention
        per_round = len(config.formats) * (
            1 + config.k * (1 + len(config.directive_search)) * config.reward_seeds
        )
        per_round += 1 + config.retention
        per_train_passage = 1 + max(1, config.rounds) * per_round
        # per held-out passage: baseline, then per condition (passage only, each round's policy, each teacher
        # that covers it): self-edit (generated or imported), train, evaluate, control, retention
        control = config.specificity_control and len(self.heldout_indices) >= 2
        heldout_jobs = sum(
            1
            + (3 + control + self.heldout_retention(i))
            * (
                1
                + config.rounds
                + 1
                + sum(self.passages[i].passage_id in c for _, c in self.teachers.values())
            )
            for i in self.heldout_indices
        )
        return per_train_passage * len(self.train_indices) + heldout_jobs + config.rounds

    def heldout_retention(self, index: int) -> bool:
        """Whether held-out passage `index`'s adapters are scored on the retention set."""
        limit = self.config.retention_heldout
        return self.config.retention and (not limit or self.heldout_indices.index(index) < limit)

    @property
    def jobs_failed(self) -> int:
        return sum(1 for record in self.jobs.values() if "error" in record)

    @property
    def finished(self) -> bool:
        return self.status in ("succeeded", "completed_with_errors", "failed")

    def summary(self) -> RunSummary:
        return RunSummary(
            id=self.id,
            name=self.name,
            status=self.status,
            created_at=self.created_at,
            updated_at=self.updated_at,
            passages=len(self.passages),
            jobs_total=self.jobs_total,
            jobs_done=len(self.jobs),
            jobs_failed=self.jobs_failed,
            retries=self.retries,
            current=self.current,
            error=self.error,
            round=self.round,
            rounds=self.config.rounds,
            policy_adapter_key=self.policy_adapter_key,
        )

    def detail(self, events: int = 50) -> RunDetail:
        return RunDetail(
            **self.summary().model_dump(),
            config=self.config,
            services=self.services,
            recent_events=self.events[max(0, len(self.events) - events) :],
            results=self.results,
        )


def _rpc_message(error: grpc.aio.AioRpcError) -> str:
    return f"{error.code().name}: {error.details()}"


class RunManager:
    """Owns every run of this coordinator: creation, execution, resumption, and their records."""

    def __init__(self, store: ObjectStore, clients: ServiceClients, settings: CoordinatorSettings) -> None:
        self.store = store
        self.clients = clients
        self.settings = settings
        self.runs: dict[str, RunState] = {}
        self._tasks: dict[str, asyncio.Task] = {}
        self._known_formats: list[str] = []
        self._limits = common_pb2.DirectiveLimits()
        self.owner = settings.instance_id or default_owner()
        self.leases = Leases(store, self.owner, settings.lease_ttl_seconds)
        self.outage = OutagePolicy(
            settings.store_outage_max_seconds, settings.initial_backoff_seconds, settings.max_backoff_seconds
        )
        self.writer = RecordWriter(store, self.outage)
        #: False until the store answered and every recorded run was loaded (/healthz says 503 until then).
        self.ready = False
        self._background: list[asyncio.Task] = []

    # ---- lifecycle -------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Wait for the store, load every recorded run and resume the unfinished ones.

        Returns when that is done, or after `startup_wait_seconds` while it goes on in the background (the
        store is away): the HTTP API then answers, /healthz with 503, until it is done.
        """
        starting = asyncio.create_task(self._start(), name="coordinator-start")
        self._background.append(starting)
        await asyncio.wait({starting}, timeout=self.settings.startup_wait_seconds)

    async def _start(self) -> None:
        while True:
            await wait_for_store(self.store.check, "coordinator", self.settings.max_backoff_seconds)
            try:
                for run_id in await call_async(lambda: run_ids(self.store), self.outage, "listing runs"):
                    if run_id not in self.runs:
                        await self._adopt(run_id, at_start=True)
                break
            except StoreUnavailable as exc:  # gone again while loading: wait for it once more
                log.warning("store unavailable while loading runs (%s)", exc.message)
        self.ready = True
        self._background.append(asyncio.create_task(self._watch_leases(), name="lease-watch"))

    async def _adopt(self, run_id: str, at_start: bool = False) -> None:
        """Know a run that is in the store; run it here if it is unfinished and its lease can be had.

        Records are read again only when the lease is ours: another coordinator may have advanced the run.
        """
        known = self.runs.get(run_id)
        if known is None:
            known = await self._load(run_id)
            self.runs[run_id] = known
        if known.finished or known.unrunnable or not self.settings.resume_unfinished_runs:
            return
        lease = await call_async(lambda: self.leases.acquire(run_id), ONCE, "taking a lease")
        if lease is None:
            known.current = f"running on another coordinator ({await self._holder(run_id)})"
            return
        try:
            run = await self._load(run_id)
        except BaseException:
            await asyncio.to_thread(self.leases.release, lease)
            raise
        self.runs[run_id] = run
        if run.finished or run.unrunnable:
            await asyncio.to_thread(self.leases.release, lease)
            return
        run.lease = lease
        reason = "coordinator restarted: resuming run" if at_start else "lease expired: taking the run over"
        self._event(run, "status", reason, data={"resumed": True, "owner": self.owner}, persist=True)
        self._schedule(run)

    async def _holder(self, run_id: str) -> str:
        return await call_async(lambda: self.leases.holder(run_id), ONCE, "reading a lease")

    async def _watch_leases(self) -> None:
        """Renew the leases of runs executing here; pick up new runs and runs whose holder went away."""
        interval = self.settings.lease_ttl_seconds / 3
        while True:
            await asyncio.sleep(interval)
            try:
                for run_id in list(self._tasks):
                    run = self.runs[run_id]
                    if run.lease is not None:
                        await self._renew(run)
                if self.settings.resume_unfinished_runs:
                    for run_id in await call_async(lambda: run_ids(self.store), ONCE, "listing runs"):
                        run = self.runs.get(run_id)
                        if run_id not in self._tasks and (
                            run is None or not (run.finished or run.unrunnable)
                        ):
                            await self._adopt(run_id)
            except StoreUnavailable as exc:
                log.warning("lease watch: store unavailable (%s)", exc.message)
            except Exception:
                log.exception("lease watch failed; trying again in %.0fs", interval)

    async def _renew(self, run: RunState) -> None:
        try:
            await call_async(lambda: self.leases.renew(run.lease), ONCE, "renewing a lease")
        except LeaseLost as exc:
            self._stop_here(run, str(exc))

    def _stop_here(self, run: RunState, reason: str) -> None:
        """Another coordinator runs this run now: stop executing it here without touching its records."""
        task = self._tasks.pop(run.id, None)
        if task is not None:
            task.cancel()
        run.lease = None
        run.current = f"running on another coordinator: {reason}"
        log.warning("run %s: %s; stopped here", run.id, reason)

    async def shutdown(self) -> None:
        """Stop executing (runs stay unfinished in the store and resume at the next start)."""
        executing = list(self._tasks)
        tasks = [*self._tasks.values(), *self._background]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for run_id in executing:
            run = self.runs[run_id]
            if run.lease is not None:  # released: another coordinator may take the run at once
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(asyncio.to_thread(self.leases.release, run.lease), 5)
        self._tasks.clear()
        await self.writer.flush(timeout=5)

    def _load_run(self, run_id: str) -> RunState:
        """Blocking. A run whose records are partly unreadable still loads; it says what was moved aside."""
        stored = read_run(self.store, run_id)
        spec = stored.spec
        if spec is None:
            return self._unrunnable(
                run_id, stored.problems, "its spec is unreadable in both copies (quarantined)"
            )
        try:
            config = RunConfig(**spec["config"])
            passages = parse_passages(spec["passages"], f"run {run_id}")
        except (ValueError, InvalidArgument) as exc:
            # A spec from a newer seal-lab (an unknown config field, say): leave it untouched for that version.
            if isinstance(exc, ValidationError):
                detail = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
            else:
                detail = str(exc).splitlines()[0]
            reason = f"its spec does not fit this seal-lab version ({detail})"
            return self._unrunnable(run_id, stored.problems, reason, name=str(spec.get("name", "")))
        run = RunState(
            id=run_id,
            name=spec["name"],
            config=config,
            passages=passages,
            created_at=spec["created_at"],
            updated_at=spec["created_at"],
            heldout_ids=frozenset(spec.get("split", {}).get("heldout", [])),
            teachers={t["name"]: (t["format"], t["completions"]) for t in spec.get("teachers", [])},
        )
        run.jobs = stored.jobs
        for record in sorted(stored.events, key=lambda e: e.get("ts", 0)):
            event = RunEvent(**{**record, "seq": len(run.events)})
            run.events.append(event)
            run.retries += event.kind == "retry"
            if event.data.get("run_failed"):  # failed runs wait for an explicit resume
                run.status, run.error = "failed", event.data.get("reason", event.message)
            elif event.data.get("resumed"):
                run.status, run.error = "queued", ""
        if stored.manifest is not None:
            manifest = stored.manifest
            run.status, run.error = manifest["status"], manifest.get("error", "")
            run.results, run.services = manifest["results"], manifest.get("services", {})
            run.updated_at = manifest.get("finished_at", run.updated_at)
        run.load_problems = stored.problems
        return run

    def _unrunnable(self, run_id: str, problems: list[str], reason: str, name: str = "") -> RunState:
        run = RunState(id=run_id, name=name, config=RunConfig(), passages=[], created_at=0.0)
        run.status, run.error, run.unrunnable = "failed", f"cannot run here: {reason}", reason
        run.load_problems = problems
        return run

    async def _load(self, run_id: str) -> RunState:
        """Load off the event loop, then tell in the run's events what had to be moved aside."""
        run = await call_async(lambda: self._load_run(run_id), ONCE, f"loading run {run_id}")
        for problem in run.load_problems:
            self._event(run, "error", f"store: {problem}", data={"quarantine": problem}, persist=True)
        run.load_problems = []
        return run

    # ---- API -------------------------------------------------------------------------------------------

    def _require_ready(self) -> None:
        if not self.ready:
            raise Unavailable("the coordinator is waiting for its object store; try again shortly")

    async def create(self, body: RunCreate) -> RunState:
        self._require_ready()
        if body.dataset == "demo":
            passages = demo_passages()
        else:
            passages = parse_passages(body.passages, "request body 'passages'")
        if body.limit:
            passages = passages[: body.limit]
        train, heldout = _split(passages, body)
        passages = train + heldout
        if len(passages) > self.settings.max_passages_per_run:
            raise InvalidArgument(
                f"{len(passages)} passages; this coordinator takes at most {self.settings.max_passages_per_run}"
            )
        requested = set(body.config.formats) | {t.format for t in body.teachers}
        unknown = sorted(f for f in requested if self._known_formats and f not in self._known_formats)
        if unknown:
            raise InvalidArgument(
                f"unknown self-edit format(s) {unknown}; the generator knows {self._known_formats}"
            )
        teachers = {
            t.name: (t.format, match_teacher_completions(t.name, t.passages, t.completion_index, heldout))
            for t in body.teachers
        }
        now = time.time()
        run = RunState(
            new_run_id(),
            body.name,
            body.config,
            passages,
            now,
            updated_at=now,
            heldout_ids=frozenset(p.passage_id for p in heldout),
            teachers=teachers,
        )
        spec = {
            "id": run.id,
            "name": run.name,
            "created_at": now,
            "config": body.config.model_dump(),
            "passages": passages_to_json(passages),
            "split": {
                "seed": body.config.seed,
                "train": [p.passage_id for p in train],
                "heldout": [p.passage_id for p in heldout],
            },
            "teachers": [
                {"name": name, "format": fmt, "completions": completions}
                for name, (fmt, completions) in teachers.items()
            ],
        }
        # One try, bounded by the store's own timeouts: while the store is away the request gets a 503 and
        # nothing was created. The lease is taken before anyone else can see the spec's run as free.
        lease = await call_async(lambda: self.leases.first(run.id), ONCE, "taking a lease")
        await call_async(lambda: write_spec(self.store, run.id, spec), ONCE, "writing a run spec")
        run.lease = lease
        self.runs[run.id] = run
        self._event(
            run,
            "status",
            f"run created: {len(train)} training and {len(heldout)} held-out passages, "
            f"{body.config.rounds} rounds, {run.jobs_total} jobs",
        )
        self._schedule(run)
        return run

    def get(self, run_id: str) -> RunState:
        try:
            return self.runs[run_id]
        except KeyError:
            raise NotFound(f"no run {run_id!r}") from None

    async def resume(self, run_id: str) -> RunState:
        self._require_ready()
        run = self.get(run_id)
        if run.unrunnable:
            raise FailedPrecondition(f"run {run_id} {run.error}")
        if run.id in self._tasks:
            raise FailedPrecondition(f"run {run_id} is already running")
        if run.status in ("succeeded", "completed_with_errors"):
            raise FailedPrecondition(f"run {run_id} has finished ({run.status})")
        if await call_async(lambda: self.store.exists(run_key(run.id, MANIFEST)), ONCE, "reading a manifest"):
            raise FailedPrecondition(f"run {run_id} has a manifest already")
        lease = await call_async(lambda: self.leases.acquire(run_id), ONCE, "taking a lease")
        if lease is None:
            raise FailedPrecondition(
                f"run {run_id} is running on another coordinator ({await self._holder(run_id)})"
            )
        run.lease = lease
        run.error = ""
        self._event(run, "status", "resuming run on request", data={"resumed": True}, persist=True)
        self._schedule(run)
        return run

    # ---- events ----------------------------------------------------------------------------------------

    def _event(
        self,
        run: RunState,
        kind: str,
        message: str,
        passage_id: str = "",
        job: str = "",
        data: dict[str, Any] | None = None,
        persist: bool | None = None,
    ) -> None:
        """Record an event; `persist` None: retries and errors are stored (they survive a restart)."""
        event = RunEvent(
            seq=len(run.events),
            ts=time.time(),
            kind=kind,
            message=message,
            passage_id=passage_id,
            job=job,
            data=data or {},
        )
        run.events.append(event)
        if len(run.events) > MAX_EVENTS_IN_MEMORY:
            del run.events[: len(run.events) - MAX_EVENTS_IN_MEMORY]
        run.updated_at = event.ts
        run.retries += kind == "retry"
        if persist is None:
            persist = kind in ("retry", "error")
        if persist:  # failures survive a coordinator restart; written in order, waiting out store outages
            stamp = f"{time.time_ns():020d}"
            self.writer.queue_event(run_key(run.id, f"events/{stamp}.json"), event.model_dump())
        log.log(logging.WARNING if kind in ("retry", "error") else logging.INFO, "%s", message)
        run.changed.set()
        run.changed = asyncio.Event()

    def _store_retry(self, run: RunState, what: str) -> Any:
        """on_retry for the run's own store calls: the run shows as paused, with an event per retry."""

        def on_retry(error: StoreUnavailable, delay: float, attempt: int) -> None:
            run.status = "paused"
            run.current = f"paused: store unavailable during {what}; retry in {delay:.0f}s"
            self._event(
                run,
                "retry",
                f"store unavailable during {what} ({error.message}); retry {attempt} in {delay:.0f}s",
                data={"service": "store", "code": type(error).__name__},
                persist=_sparse(attempt),
            )

        return on_retry

    async def _persist(self, run: RunState, key: str, record: dict[str, Any], what: str) -> None:
        await self.writer.put(key, record, self._store_retry(run, what))
        if run.status == "paused":
            run.status = "running"

    # ---- execution -------------------------------------------------------------------------------------

    def _schedule(self, run: RunState) -> None:
        task = asyncio.create_task(self._execute(run), name=run.id)
        self._tasks[run.id] = task
        task.add_done_callback(
            lambda done: self._tasks.pop(run.id, None) if self._tasks.get(run.id) is done else None
        )

    async def _execute(self, run: RunState) -> None:
        with bind_context(run_id=run.id):
            run.status = "running"
            self._event(run, "status", "running")
            try:
                limits = await self._check_services(run)
                await self._experiment(run, limits)
                run.results = build_results(run.passages, run.jobs, run.config, run.heldout_ids, run.teachers)
                run.results["reproducibility"] = self._reproducibility(run)
                run.results["phase_seconds"] = {
                    e.data["phase"]: e.data["seconds"] for e in run.events if "phase" in e.data
                }
                results = run.results
                await call_async(
                    lambda: attach_examples(results, self.store),
                    self.outage,
                    "reading examples",
                    self._store_retry(run, "reading examples"),
                )
                run.status = "completed_with_errors" if run.jobs_failed else "succeeded"
                run.current = ""
                await self._write_manifest(run)
                self._event(run, "status", f"run {run.status}", data={"summary": run.results["summary"]})
                await self._release(run)
            except asyncio.CancelledError:
                if run.lease is not None:
                    run.current = "stopped by coordinator shutdown; resumes at next start"
                raise
            except LeaseLost as exc:
                self._stop_here(run, str(exc))
            except StoreUnavailable as exc:
                self._fail(run, f"the object store stayed unavailable: {exc.message}")
            except (RunInterrupted, FailedPrecondition) as exc:
                self._fail(run, str(exc))
            except Exception as exc:
                log.exception("run failed")
                self._fail(run, f"internal error: {type(exc).__name__}: {exc}")

            if run.status == "failed":  # waits for a resume, which any coordinator may take
                await self._release(run)

    async def _release(self, run: RunState) -> None:
        lease, run.lease = run.lease, None
        if lease is not None:
            with contextlib.suppress(StoreUnavailable):
                await call_async(lambda: self.leases.release(lease), ONCE, "releasing a lease")

    def _fail(self, run: RunState, message: str) -> None:
        run.status, run.error, run.current = "failed", message, ""
        self._event(
            run,
            "error",
            f"run failed: {message} (POST /v1/runs/{run.id}/resume to continue)",
            data={"run_failed": True, "reason": message},
        )

    async def _write_manifest(self, run: RunState) -> None:
        manifest = {
            "id": run.id,
            "status": run.status,
            "error": run.error,
            "finished_at": time.time(),
            "services": run.services,
            "job_keys": sorted(run.jobs),
            "results": run.results,
        }
        await self._persist(run, run_key(run.id, MANIFEST), manifest, "writing the manifest")

    async def _call(
        self, run: RunState, service: str, what: str, attempt_fn: Callable[[int, str], Awaitable[Any]]
    ) -> Any:
        """Call a service, retrying while it is unreachable. `attempt_fn(attempt, last_failed_address)`.

        A service that answers "the store is unavailable" is waited for without using up its attempts: the
        run pauses until the store is back (or `store_outage_max_seconds` has passed).
        """
        last_address = ""
        attempt = 0
        outage_started: float | None = None
        store_delays = self.outage.delays()
        waits = 0
        while True:
            attempt += 1
            try:
                result = await attempt_fn(attempt, last_address)
                if run.status == "paused":
                    run.status = "running"
                return result
            except ServiceCallFailed as failed:
                exc, last_address = failed.error, failed.address
            except grpc.aio.AioRpcError as exc_:
                exc, last_address = exc_, ""
            if exc.code() not in RETRYABLE_CODES:
                raise JobFailed(f"{service} refused {what}: {_rpc_message(exc)}") from None
            where = f" at {last_address}" if last_address else ""
            if is_store_outage(exc):
                attempt -= 1  # the store's outage, not the service's
                outage_started = outage_started or time.monotonic()
                if time.monotonic() - outage_started > self.settings.store_outage_max_seconds:
                    raise RunInterrupted(f"the store stayed unavailable for {what}: {exc.details()}")
                delay = next(store_delays)
                run.status = "paused"
                run.current = f"paused: {service}{where} cannot reach the store; retry in {delay:.0f}s"
                waits += 1
                self._event(
                    run,
                    "retry",
                    f"{service}{where} cannot reach the store during {what} ({exc.details()}); "
                    f"waiting {delay:.0f}s",
                    data={
                        "service": "store",
                        "via": service,
                        "address": last_address,
                        "code": exc.code().name,
                    },
                    persist=_sparse(waits),
                )
                await asyncio.sleep(delay)
                continue
            outage_started, store_delays, waits = None, self.outage.delays(), 0
            if attempt >= self.settings.max_attempts:
                raise RunInterrupted(
                    f"{service} unavailable for {what} after {attempt} attempts: {_rpc_message(exc)}"
                ) from None
            delay = min(
                self.settings.max_backoff_seconds,
                self.settings.initial_backoff_seconds * 2 ** (attempt - 1),
            )
            self._event(
                run,
                "retry",
                f"{service}{where} failed during {what} ({_rpc_message(exc)}); "
                f"retry {attempt}/{self.settings.max_attempts - 1} in {delay:.0f}s",
                data={"service": service, "address": last_address, "code": exc.code().name},
            )
            await asyncio.sleep(delay)

    async def _unary(
        self,
        run: RunState,
        service: str,
        rpc: Callable[..., Awaitable[Any]],
        request: Any,
        what: str,
        slot: asyncio.Semaphore | None = None,
    ) -> Any:
        """One unary call to the generator or the evaluator, retried by `_call`; `slot` queues model work."""
        address = {"generator": self.settings.generator_address, "evaluator": self.settings.evaluator_address}
        timeout = {
            "generator": self.settings.generate_timeout_seconds,
            "evaluator": self.settings.evaluate_timeout_seconds,
        }

        async def attempt(*_: Any) -> Any:
            async with slot or contextlib.nullcontext():
                try:
                    return await rpc(request, timeout=timeout[service])
                except grpc.aio.AioRpcError as exc:
                    raise ServiceCallFailed(exc, address[service]) from None

        return await self._call(run, service, what, attempt)

    async def _check_services(self, run: RunState) -> common_pb2.DirectiveLimits:
        """All services must serve the same base model; the trainer's limits bound every directive."""
        request = common_pb2.GetInfoRequest()
        timeout = self.settings.info_timeout_seconds
        run.current = "checking services"

        async def info(stub: Any, address: str) -> common_pb2.ServiceInfo:
            try:
                return await stub.GetInfo(request, timeout=timeout)
            except grpc.aio.AioRpcError as exc:
                raise ServiceCallFailed(exc, address) from None

        generator = await self._call(
            run,
            "generator",
            "GetInfo",
            lambda *_: info(self.clients.generator, self.settings.generator_address),
        )
        evaluator = await self._call(
            run,
            "evaluator",
            "GetInfo",
            lambda *_: info(self.clients.evaluator, self.settings.evaluator_address),
        )
        trainers = []
        for endpoint in self.clients.trainers.endpoints:
            trainers.append(
                await self._call(run, "trainer", "GetInfo", lambda *_, e=endpoint: info(e.stub, e.address))
            )
        self._known_formats = list(generator.formats)
        run.services = {
            "generator": _info_dict(generator, self.settings.generator_address),
            "evaluator": _info_dict(evaluator, self.settings.evaluator_address),
            "trainers": [
                {**_info_dict(t, e.address), "max_group_size": max(1, t.max_group_size)}
                for t, e in zip(trainers, self.clients.trainers.endpoints, strict=True)
            ],
        }
        expected = evaluator.model_fingerprint
        for trainer, endpoint in zip(trainers, self.clients.trainers.endpoints, strict=True):
            if trainer.model_fingerprint != expected:
                raise FailedPrecondition(
                    f"trainer at {endpoint.address} serves {trainer.model_name} ({trainer.model_fingerprint}) but the "
                    f"evaluator serves {evaluator.model_name} ({expected}): all services must share one base model"
                )
        if generator.backend == "local" and generator.model_fingerprint != expected:
            raise FailedPrecondition(
                f"generator serves {generator.model_name} ({generator.model_fingerprint}) but the evaluator serves "
                f"{evaluator.model_name} ({expected}): all services must share one base model"
            )
        unknown = [f for f in run.config.formats if f not in generator.formats]
        if unknown:
            raise FailedPrecondition(
                f"unknown self-edit format(s) {unknown}; the generator knows {list(generator.formats)}"
            )
        # A trainer that groups concurrent Train calls gets that many at once; asked again at every run's
        # start (and resume), so a trainer restarted with another group size is taken as it is now.
        for trainer, endpoint in zip(trainers, self.clients.trainers.endpoints, strict=True):
            self.clients.trainers.set_capacity(endpoint.address, trainer.max_group_size)
        self._limits = trainers[0].limits
        return trainers[0].limits

    async def _job(
        self, run: RunState, index: int | None, name: str, work: Callable[[], Awaitable[dict[str, Any]]]
    ) -> dict[str, Any] | None:
        """Run one job unless its record exists; record the result (or a permanent failure) write-once.

        `index` is the passage's; run-level jobs (a policy update) pass None.
        """
        job_name = name if index is None else f"{index:04d}-{name}"
        if job_name in run.jobs:
            record = run.jobs[job_name]
            return None if "error" in record else record
        passage_id = "" if index is None else run.passages[index].passage_id
        where = "run" if index is None else f"passage {index + 1}/{len(run.passages)}"
        run.current = f"round {run.round}, {where}: {name}"
        self._event(run, "progress", run.current, passage_id=passage_id, job=job_name)
        try:
            record = await work()
        except JobFailed as exc:
            record = {"error": str(exc)}
            self._event(run, "error", f"job {job_name} failed: {exc}", passage_id=passage_id, job=job_name)
        await self._persist(run, job_key(run.id, job_name), record, f"recording job {job_name}")
        run.jobs[job_name] = record
        if "error" not in record:
            self._event(
                run, "job", f"done {job_name}", passage_id=passage_id, job=job_name, data=_job_digest(record)
            )
        return None if "error" in record else record

    # ---- the experiment: rounds on the training passages, conditions on the held-out ones ---------------

    async def _experiment(self, run: RunState, limits: common_pb2.DirectiveLimits) -> None:
        config = run.config
        if config.rounds and run.services["generator"]["backend"] != "local":
            raise FailedPrecondition(
                "ReST-EM rounds fine-tune the generator's own model; this generator uses a remote teacher"
            )
        gate = asyncio.Semaphore(self.settings.max_concurrent_passages)
        policy_key = config.policy_adapter_key
        run.policy_adapter_key = policy_key
        if run.heldout_ids:  # no adapter, passage only, teachers, and the round-0 generator
            async with self._phase(run, "heldout-p0"):
                await self._heldout(run, 0, policy_key, limits, gate, fixed_conditions=True)
        for round_index in range(max(1, config.rounds)):
            run.round = round_index
            async with self._phase(run, f"round-{round_index}"):
                await _all_or_none(
                    self._passage(run, i, run.passages[i], limits, gate, round_index, policy_key)
                    for i in run.train_indices
                )
            if not config.rounds:
                break
            async with self._phase(run, f"policy-r{round_index + 1}"):
                policy_key = await self._update_policy(run, round_index, policy_key, limits)
            run.policy_adapter_key = policy_key
            if run.heldout_ids:
                async with self._phase(run, f"heldout-p{round_index + 1}"):
                    await self._heldout(
                        run, round_index + 1, policy_key, limits, gate, fixed_conditions=False
                    )

    @contextlib.asynccontextmanager
    async def _phase(self, run: RunState, phase: str) -> AsyncIterator[None]:
        """Wall-clock seconds of one phase (a round, a policy update...), kept as a persisted event.

        A phase resumed after a restart reports the time of its last stretch only.
        """
        started = time.perf_counter()
        yield
        seconds = round(time.perf_counter() - started, 1)
        self._event(
            run,
            "status",
            f"{phase} done in {seconds:.0f}s",
            data={"phase": phase, "seconds": seconds},
            persist=True,
        )

    async def _passage(
        self,
        run: RunState,
        index: int,
        passage: Passage,
        limits: common_pb2.DirectiveLimits,
        gate: asyncio.Semaphore,
        round_index: int,
        policy_key: str,
    ) -> None:
        stage = round_stage(round_index)
        trainer_limits = DirectiveLimits.from_proto(limits)
        async with gate:
            await self._job(run, index, "baseline", lambda: self._evaluate(run, passage, [""]))
            adapter_keys: list[str] = []
            for format_index, edit_format in enumerate(run.config.formats):
                generated = await self._job(
                    run,
                    index,
                    f"{stage}generate-{edit_format}",
                    lambda f=edit_format, fi=format_index: self._generate(
                        run, index, fi, passage, f, limits, policy_key, run.config.k
                    ),
                )
                if generated is None:
                    continue
                trials = [
                    (
                        f"{stage}train-{edit['format']}-{edit['sample_index']}{suffix}{seed_suffix(s)}",
                        edit,
                        directive,
                        s,
                    )
                    for edit in generated["self_edits"]
                    for suffix, directive in _directive_trials(edit, run.config, trainer_limits)
                    for s in range(run.config.reward_seeds)
                ]
                trained = await _all_or_none(
                    self._job(
                        run,
                        index,
                        name,
                        lambda e=edit, d=directive, n=name, s=s: self._train(
                            run, passage, e["dataset_key"], d, n, seed_offset=REWARD_SEED_STRIDE * s
                        ),
                    )
                    for name, edit, directive, s in trials
                )
                adapter_keys += [t["adapter_key"] for t in trained if t is not None]
            adapter_keys = list(dict.fromkeys(adapter_keys))  # identical jobs share one adapter
            if adapter_keys:
                await self._job(
                    run, index, f"{stage}evaluate", lambda: self._evaluate(run, passage, adapter_keys)
                )
            if adapter_keys and run.config.retention:
                await self._job(
                    run,
                    index,
                    f"{stage}retention",
                    lambda: self._evaluate(run, passage, ["", *adapter_keys], retention_questions()),
                )

    async def _update_policy(
        self, run: RunState, round_index: int, policy_key: str, limits: common_pb2.DirectiveLimits
    ) -> str:
        """ReST-EM's M-step: fine-tune the generator's policy on this round's winning self-edits."""

        async def work() -> dict[str, Any]:
            passages = round_passages(
                run.passages, run.train_indices, run.jobs, run.config, round_stage(round_index)
            )
            winners = [
                {"passage_id": p["passage_id"], **p["best"]}
                for p in passages
                if p["best"] is not None and p["best"]["reward"] > run.config.min_reward
            ]
            record: dict[str, Any] = {
                "round": round_index,
                "previous_policy_adapter_key": policy_key,
                "winners": winners,
            }
            if not winners:
                self._event(run, "status", f"round {round_index}: no winning self-edit; the policy stays")
                return {**record, "adapter_key": policy_key, "skipped": "no self-edit beat min_reward"}
            dataset_key, examples = await call_async(
                lambda: build_policy_dataset(self.store, winners),
                self.outage,
                "building the policy dataset",
                self._store_retry(run, "building the policy dataset"),
            )
            if not examples:
                return {
                    **record,
                    "adapter_key": policy_key,
                    "skipped": "the winners carry no policy examples",
                }
            directive = DirectiveLimits.from_proto(limits).clamp(
                Directive(**run.config.policy_directive.model_dump())
            )
            trained = await self._train(
                run,
                None,
                dataset_key,
                directive.as_dict(),
                f"policy-r{round_index + 1}",
                seed_offset=round_index,
            )
            self._event(
                run,
                "status",
                f"round {round_index}: policy fine-tuned on {len(winners)} winning self-edits "
                f"({examples} examples) -> {trained['adapter_key']}",
            )
            return {**record, **trained, "dataset_key": dataset_key, "examples": examples}

        record = await self._job(run, None, f"policy-r{round_index + 1}", work)
        if record is None:
            raise RunInterrupted(f"the policy update after round {round_index} failed (see the run's events)")
        return record["adapter_key"]

    async def _heldout(
        self,
        run: RunState,
        policy_index: int,
        policy_key: str,
        limits: common_pb2.DirectiveLimits,
        gate: asyncio.Semaphore,
        fixed_conditions: bool,
    ) -> None:
        """SEAL's protocol on passages the policy never trained on: one self-edit, one adapter, the questions."""
        config = run.config
        edit_format = config.heldout_edit_format

        async def one(index: int) -> None:
            passage = run.passages[index]
            async with gate:
                if fixed_conditions:
                    await self._job(run, index, "baseline", lambda: self._evaluate(run, passage, [""]))
                    await self._condition(
                        run,
                        index,
                        "passage",
                        limits,
                        lambda: self._import(run, passage, edit_format, [""], "passage-only"),
                    )
                    for name, (teacher_format, completions) in run.teachers.items():
                        if passage.passage_id in completions:
                            await self._condition(
                                run,
                                index,
                                f"teacher-{name}",
                                limits,
                                lambda n=name, f=teacher_format, c=completions: self._import(
                                    run, passage, f, [c[passage.passage_id]], f"teacher:{n}"
                                ),
                            )
                await self._condition(
                    run,
                    index,
                    f"p{policy_index}",
                    limits,
                    lambda: self._generate(
                        run, index, HELDOUT_FORMAT_INDEX, passage, edit_format, limits, policy_key, 1
                    ),
                )

        run.current = f"held-out passages with the policy of round {policy_index}"
        await _all_or_none(one(i) for i in run.heldout_indices)

    async def _condition(
        self,
        run: RunState,
        index: int,
        condition: str,
        limits: common_pb2.DirectiveLimits,
        make_self_edit: Callable[[], Awaitable[dict[str, Any]]],
    ) -> None:
        passage = run.passages[index]
        prefix = f"heldout-{condition}-"
        made = await self._job(run, index, prefix + "edit", make_self_edit)
        if made is None:
            return
        edit = made["self_edits"][0]
        directive = (
            edit["directive"]
            if run.config.conditions_directive == "generated"
            else DirectiveLimits.from_proto(limits).default.as_dict()
        )
        trained = await self._job(
            run,
            index,
            prefix + "train",
            lambda: self._train(run, passage, edit["dataset_key"], directive, prefix + "train"),
        )
        if trained is None:
            return
        key = trained["adapter_key"]
        await self._job(run, index, prefix + "evaluate", lambda: self._evaluate(run, passage, [key]))
        other = _control_passage(run, index)
        if other is not None:  # specificity: the same adapter on another passage's questions
            await self._job(run, index, prefix + "control", lambda: self._evaluate(run, other, ["", key]))
        if run.heldout_retention(index):
            await self._job(
                run,
                index,
                prefix + "retention",
                lambda: self._evaluate(run, passage, ["", key], retention_questions()),
            )

    def _reproducibility(self, run: RunState) -> dict[str, Any]:
        """What it takes to rerun this run and get the same self-edits and scores."""
        policies = [run.config.policy_adapter_key] + [
            run.jobs.get(f"policy-r{r + 1}", {}).get("adapter_key", "") for r in range(run.config.rounds)
        ]
        return {
            "seed": run.config.seed,
            "config": run.config.model_dump(),
            "split": {
                "train": [run.passages[i].passage_id for i in run.train_indices],
                "heldout": [run.passages[i].passage_id for i in run.heldout_indices],
            },
            "teachers": {name: sorted(c) for name, (_, c) in run.teachers.items()},
            "base_model": {
                "name": run.services.get("evaluator", {}).get("model_name", ""),
                "fingerprint": run.services.get("evaluator", {}).get("model_fingerprint", ""),
            },
            # Adapter keys are sha256 over the adapter's weights and config.
            "policy_adapters": [{"round": r, "adapter_key": key} for r, key in enumerate(policies)],
            "runtime": {
                "coordinator": runtime_versions(),
                **{
                    name: info.get("runtime", {})
                    for name, info in run.services.items()
                    if isinstance(info, dict)
                },
                "trainers": [t.get("runtime", {}) for t in run.services.get("trainers", [])],
            },
        }

    async def _generate(
        self,
        run: RunState,
        index: int,
        format_index: int,
        passage: Passage,
        edit_format: str,
        limits: Any,
        policy_key: str,
        num_samples: int,
    ) -> dict[str, Any]:
        config = run.config
        request = generator_pb2.GenerateRequest(
            passage=generator_pb2.Passage(
                passage_id=passage.passage_id, title=passage.title, context=passage.context
            ),
            format=edit_format,
            num_samples=num_samples,
            sampling=generator_pb2.SamplingParams(
                temperature=config.temperature,
                top_p=config.top_p,
                max_new_tokens=config.max_new_tokens,
                seed=config.seed * 1_000_003 + index * 101 + format_index,
            ),
            policy_adapter_key=policy_key,
            limits=limits,
            include_passage=config.include_passage,
            run_id=run.id,
        )

        response = await self._unary(
            run,
            "generator",
            self.clients.generator.Generate,
            request,
            f"self-edits for {passage.passage_id}",
            slot=self.clients.generator_slot,
        )
        return {**_self_edits_record(response), "policy_adapter_key": policy_key}

    async def _import(
        self, run: RunState, passage: Passage, edit_format: str, outputs: list[str], source: str
    ) -> dict[str, Any]:
        """Store self-edits written elsewhere (or, with [""], the passage alone) as training datasets."""
        request = generator_pb2.ImportRequest(
            passage=generator_pb2.Passage(
                passage_id=passage.passage_id, title=passage.title, context=passage.context
            ),
            format=edit_format,
            outputs=outputs,
            limits=self._limits,
            include_passage=run.config.include_passage or outputs == [""],
            source=source,
            run_id=run.id,
        )

        # Import only writes to the store: it does not wait for the generator's model slot.
        response = await self._unary(
            run,
            "generator",
            self.clients.generator.Import,
            request,
            f"importing {source} for {passage.passage_id}",
        )
        return {**_self_edits_record(response), "source": source}

    async def _train(
        self,
        run: RunState,
        passage: Passage | None,
        dataset_key: str,
        directive: dict[str, Any],
        label: str,
        seed_offset: int = 0,
    ) -> dict[str, Any]:
        """Train one adapter (a passage's, or the policy's when `passage` is None) on a stored dataset."""
        where = passage.passage_id if passage else "policy"
        request = trainer_pb2.TrainRequest(
            dataset_key=dataset_key,
            directive=common_pb2.Directive(**directive),
            seed=run.config.seed + seed_offset,
            job_id=f"{run.id}/{where}/{label}",
        )

        async def attempt(_: int, avoid: str) -> dict[str, Any]:
            async with self.clients.trainers.acquire(avoid=avoid) as trainer:
                try:
                    async for event in trainer.stub.Train(
                        request, timeout=self.settings.train_timeout_seconds
                    ):
                        if event.HasField("progress"):
                            p = event.progress
                            run.current = (
                                f"training {where} {label} on {trainer.address}: "
                                f"step {p.step}/{p.total_steps} loss {p.loss:.3f} (round {run.round})"
                            )
                            run.changed.set()
                            run.changed = asyncio.Event()
                        else:
                            r = event.result
                            return {
                                "adapter_key": r.adapter_key,
                                "directive": directive,
                                "reused": r.reused,
                                "trainer": trainer.address,
                                "metrics": {
                                    "steps": r.metrics.steps,
                                    "tokens": r.metrics.tokens,
                                    "seconds": r.metrics.seconds,
                                    "tokens_per_second": r.metrics.tokens_per_second,
                                    "final_loss": r.metrics.step_loss[-1] if r.metrics.step_loss else None,
                                    "first_loss": r.metrics.step_loss[0] if r.metrics.step_loss else None,
                                    "group_size": r.metrics.group_size or 1,
                                },
                            }
                except grpc.aio.AioRpcError as exc:
                    raise ServiceCallFailed(exc, trainer.address) from None
            raise JobFailed(f"trainer at {trainer.address} ended the stream without a result")

        return await self._call(run, "trainer", f"training {dataset_key}", attempt)

    async def _evaluate(
        self,
        run: RunState,
        passage: Passage,
        adapter_keys: list[str],
        questions: list[Question] | None = None,
    ) -> dict[str, Any]:
        """Evaluate adapters on the passage's questions (or on `questions`, e.g. the retention set)."""
        # A passage's questions name its topic (SEAL's "Topic: {title}"); general questions have none.
        topic = "" if questions is not None else passage.title
        request = evaluator_pb2.EvaluateRequest(
            questions=[
                evaluator_pb2.Question(
                    question_id=q.question_id, question=q.question, answers=list(q.answers), topic=topic
                )
                for q in (questions or passage.questions)
            ],
            adapter_keys=adapter_keys,
            max_new_tokens=run.config.eval_max_new_tokens,
            run_id=run.id,
        )

        what = "baseline" if adapter_keys == [""] else f"{len(adapter_keys)} adapters"
        if questions is not None:
            what += " on the retention set"
        response = await self._unary(
            run,
            "evaluator",
            self.clients.evaluator.Evaluate,
            request,
            f"{what} for {passage.passage_id}",
            slot=self.clients.evaluator_slot,
        )
        return {
            "seconds": response.seconds,
            "evaluations": {
                e.adapter_key: {
                    "mean": {**_scores(e.mean), "gold_logprob": round(e.mean_gold_logprob, 5)},
                    "cached": e.cached,
                    "answers": [
                        {
                            "question_id": a.question_id,
                            "answer": a.answer,
                            "scores": {**_scores(a.scores), "gold_logprob": round(a.gold_logprob, 5)},
                        }
                        for a in e.answers
                    ],
                }
                for e in response.evaluations
            },
        }


def _control_passage(run: RunState, index: int) -> Passage | None:
    """The held-out passage after `index` (cyclically): its questions are the specificity control."""
    held = run.heldout_indices
    if not run.config.specificity_control or len(held) < 2 or index not in held:
        return None
    return run.passages[held[(held.index(index) + 1) % len(held)]]


def _sparse(attempt: int) -> bool:
    """Store the 1st, 2nd, 4th, 8th... retry of one outage: a day-long outage leaves a dozen records, not
    thousands (every retry is still an event in memory and on the stream)."""
    return attempt & (attempt - 1) == 0


#: Sampling seeds of held-out self-edits sit apart from those of the training formats.
HELDOUT_FORMAT_INDEX = 50


def _directive_trials(
    edit: dict[str, Any], config: RunConfig, limits: DirectiveLimits
) -> list[tuple[str, dict[str, Any]]]:
    """(job-name suffix, directive): the self-edit's own directive, then each directive-search variant."""
    own = {**limits.default.as_dict(), **edit["directive"]}
    trials = [("", own)]
    for number, override in enumerate(config.directive_search, start=1):
        varied = limits.clamp(Directive(**{**own, **epochs_mean_epochs(override.fields_set())})).as_dict()
        trials.append((f"-d{number}", varied))
    return trials


def _split(passages: list[Passage], body: RunCreate) -> tuple[list[Passage], list[Passage]]:
    """(training, held-out) passages: the given held-out set, or `config.heldout` of them by seeded shuffle."""
    if body.heldout_passages is not None:
        heldout = parse_passages(body.heldout_passages, "request body 'heldout_passages'")
        overlap = {p.passage_id for p in passages} & {p.passage_id for p in heldout}
        if overlap:
            raise InvalidArgument(
                f"{len(overlap)} passage(s) are both training and held-out, e.g. {sorted(overlap)[0]!r}"
            )
        return passages, heldout
    count = body.config.heldout
    if not count:
        return passages, []
    if count >= len(passages):
        raise InvalidArgument(
            f"config.heldout={count} leaves none of the {len(passages)} passages for training"
        )
    order = list(range(len(passages)))
    random.Random(body.config.seed).shuffle(order)
    held = set(order[:count])
    return (
        [p for i, p in enumerate(passages) if i not in held],
        [p for i, p in enumerate(passages) if i in held],
    )


async def _all_or_none(coroutines: Any) -> list[Any]:
    """Run concurrently; if one fails (or the run is cancelled), cancel the others before re-raising."""
    tasks = [asyncio.ensure_future(c) for c in coroutines]
    try:
        return await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


def _self_edits_record(
    response: generator_pb2.GenerateResponse | generator_pb2.ImportResponse,
) -> dict[str, Any]:
    return {
        "seconds": response.seconds,
        "self_edits": [
            {
                "dataset_key": e.dataset_key,
                "format": e.format,
                "sample_index": e.sample_index,
                # Every field, zeros included (steps = 0 means "epochs"; ListFields would drop it).
                "directive": Directive.from_proto(e.directive).as_dict(),
                "directive_source": directive_source_name(e.directive_source),
                "directive_notes": list(e.directive_notes),
                "num_texts": e.num_texts,
                "preview": e.preview,
                "generated_tokens": e.generated_tokens,
            }
            for e in response.self_edits
        ],
    }


def _scores(message: evaluator_pb2.Scores) -> dict[str, float]:
    return {
        "exact_match": message.exact_match,
        "f1": message.f1,
        "contains": message.contains,
        "token_recall": message.token_recall,
    }


def _info_dict(info: common_pb2.ServiceInfo, address: str) -> dict[str, Any]:
    return {
        "address": address,
        "service": info.service,
        "version": info.version,
        "model_name": info.model_name,
        "model_fingerprint": info.model_fingerprint,
        "device": info.device,
        "dtype": info.dtype,
        "backend": info.backend,
        "runtime": dict(info.runtime),
    }


def _job_digest(record: dict[str, Any]) -> dict[str, Any]:
    """A small view of a job record for progress events."""
    if "adapter_key" in record:
        return {
            "adapter_key": record["adapter_key"],
            "reused": record.get("reused", False),
            "skipped": record.get("skipped", ""),
            **record.get("metrics", {}),
        }
    if "self_edits" in record:
        return {"self_edits": len(record["self_edits"]), "seconds": record["seconds"]}
    if "evaluations" in record:
        return {key or "baseline": e["mean"] for key, e in record["evaluations"].items()}
    return {}
