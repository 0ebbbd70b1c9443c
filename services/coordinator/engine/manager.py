"""The coordinator's runs: created, scheduled, resumed after a restart, and handed between coordinators.

Every finished job is written to the store as a write-once record (records.py), so a restarted coordinator
resumes an unfinished run without redoing finished jobs. The run's manifest is written last.
A service that is down is retried with backoff and shows up in the run's events; a request a service
refuses (bad input) fails that job only, and the rest of the run goes on (calls.py). When the object store is
away (down, hanging, full) the run pauses, without counting it against any service, and goes on when it is
back. A lease (lease.py) makes sure one coordinator runs a run, even when several share the store.
Every run has an entry in the store's run index (index.py), written with its status changes: start-up
reads the index, not every run; the lease watch reads the index's newest entries and looks at the unfinished
runs only. Finished runs are not kept in memory: their summaries are (the index's), and a finished run's
details are read from the store when asked for, the last few kept (`FINISHED_CACHE`).
A run's plan must fit the coordinator's budgets (budget.py) before it starts. A cancel is recorded in the store
first, so the run stays stopped: no coordinator resumes it, and POST .../resume refuses it. The run is then
"cancelling" until nothing of it runs any more: a standard run's service calls are cancelled (the services drop
their jobs), a continual run's streams each finish their step in flight (kept in its records); only then is it
"cancelled" (its lease released, its index entry final).
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import time
from collections import OrderedDict
from collections.abc import Iterator
from functools import partial

from seal_lab.errors import FailedPrecondition, InvalidArgument, StoreUnavailable, Unavailable
from seal_lab.formats.passages import demo_passages, parse_passages
from seal_lab.logging import bind_context
from seal_lab.store import ObjectStore
from seal_lab.store.outage import ONCE, OutagePolicy, call_async, wait_for_store

from ..results.build import build_results
from ..results.continual import build_continual_results
from ..run.continual import stream_orders
from ..run.schemas import RunCreate, RunSummary
from ..run.services import ServicesStatus
from ..run.split import choose_heldout
from ..settings import CoordinatorSettings
from . import admission
from .budget import Budget
from .calls import RunInterrupted, ServiceCalls
from .clients import ServiceClients
from .continual import ContinualExperiment
from .errors import RunCancelled, RunFinished, RunNotFound, RunRunning
from .events import EventLog
from .examples import attach_examples
from .experiment import Experiment
from .index import SNAPSHOT_AFTER, RunIndex
from .lease import Leases, default_owner
from .policy import match_teacher_completions
from .records import MANIFEST, LeaseLost, RecordWriter, delete_run, has_spec, run_key, write_spec
from .servicecheck import TrainerLimits
from .state import (
    RunState,
    cancelled_results,
    is_cancelled,
    load_run,
    manifest,
    new_run_id,
    reproducibility,
    run_spec,
    write_cancel,
)
from .survey import survey

log = logging.getLogger(__name__)

#: Finished runs whose details stay in memory after they were read (or finished here); the others are read
#: from the store when asked for.
FINISHED_CACHE = 16
#: Runs the index lacks read from their records at once at start-up (an old store's first start).
REBUILD_AT_ONCE = 8
#: How long POST .../cancel waits for the run to stop before it answers "cancelling" (the run becomes
#: "cancelled" by itself once its work in flight has ended; a standard run's calls end in moments).
CANCEL_ANSWER_SECONDS = 2.0
#: A run's `current` line while it is cancelling, by mode.
CANCELLING = {
    "standard": "cancelling: its calls to the services are being cancelled",
    "continual": "cancelling: each stream finishes its step in flight, then stops",
}


class RunManager:
    """Owns every run of this coordinator: creation, execution, resumption, and their records."""

    def __init__(self, store: ObjectStore, clients: ServiceClients, settings: CoordinatorSettings) -> None:
        self.store = store
        self.clients = clients
        self.settings = settings
        #: The unfinished runs in memory (those executing here among them); finished ones are retired.
        self.runs: dict[str, RunState] = {}
        #: Every run's summary (the store's run index), finished runs included.
        self.index = RunIndex(store)
        self._finished: OrderedDict[str, RunState] = OrderedDict()
        self._tasks: dict[str, asyncio.Task] = {}
        #: Per cancelling run: what waits for its task to end, then calls it cancelled (_finish_cancel).
        self._cancelling: dict[str, asyncio.Task] = {}
        self.owner = settings.instance_id or default_owner()
        self.leases = Leases(store, self.owner, settings.lease_ttl_seconds)
        self.outage = OutagePolicy(
            settings.store_outage_max_seconds, settings.initial_backoff_seconds, settings.max_backoff_seconds
        )
        self.writer = RecordWriter(store, self.outage)
        self.events = EventLog(self.writer)
        self.calls = ServiceCalls(clients, settings, self.outage, self.events)
        self.budget = Budget(settings)
        self.limits = TrainerLimits(settings.info_timeout_seconds)  # plans trainings, checks directives
        #: False until the store answered and the run index was read (/healthz says 503 until then).
        self.ready = False
        self._background: list[asyncio.Task] = []

    # ---- lifecycle -------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Wait for the store, read the run index (index.py) and resume the unfinished runs.

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
                await self._load_index()
                if self.settings.resume_unfinished_runs:
                    for run_id in self.index.unfinished():
                        if run_id not in self._tasks:
                            await self._adopt(run_id, at_start=True)
                break
            except StoreUnavailable as exc:  # gone again while loading: wait for it once more
                log.warning("store unavailable while loading runs (%s)", exc.message)
        self.ready = True
        self._background.append(asyncio.create_task(self._watch_leases(), name="lease-watch"))

    async def _load_index(self) -> None:
        """Read the run index; rebuild the entries of runs it lacks from their records (a store an older
        seal-lab wrote, a crash between a run's spec and its first entry), drop those whose run is gone."""
        started = time.monotonic()
        loaded = await call_async(self.index.load, self.outage, "reading the run index")
        self.index.adopt(loaded)
        folders = await call_async(self.index.run_folders, self.outage, "listing the run folders")
        gone = [run_id for run_id in self.index.entries if run_id not in folders and self.index.get(run_id)]
        for run_id in gone:
            self.index.forget(run_id)
        rebuilt = 0
        unknown = sorted(folders - set(self.index.entries))  # a deleted run's entry counts: it stays gone
        for at in range(0, len(unknown), REBUILD_AT_ONCE):  # a few at a time: a store's latency, not its size
            chunk = unknown[at : at + REBUILD_AT_ONCE]
            for run in await asyncio.gather(*(self._rebuild(run_id) for run_id in chunk)):
                if run is not None:
                    self._tell_problems(run)
                    self.index.rebuilt(run.id, run.summary(), run.unrunnable)
                    rebuilt += 1
        if rebuilt or gone or loaded.tail > SNAPSHOT_AFTER or (self.index.entries and not loaded.snapshots):
            entries = dict(self.index.entries)
            await call_async(
                lambda: self.index.snapshot(entries, loaded.snapshots), self.outage, "writing the run index"
            )
        log.info(
            "run index: %d runs (%d rebuilt from their records, %d gone, %d log entries read) in %.2fs",
            sum(1 for _ in self.index.summaries()),
            rebuilt,
            len(gone),
            loaded.tail,
            time.monotonic() - started,
        )

    async def _rebuild(self, run_id: str) -> RunState | None:
        """A run the index lacks, read from its records (None: its folder holds no run)."""
        if not await call_async(partial(has_spec, self.store, run_id), self.outage, "reading a spec"):
            return None
        return await self._load(run_id)

    async def _adopt(self, run_id: str, at_start: bool = False) -> None:
        """Run here a run the index calls unfinished, if its lease can be had.

        Records are read only when the lease is ours: another coordinator may have advanced the run.
        """
        known = self.runs.get(run_id)
        lease = await call_async(lambda: self.leases.acquire(run_id), ONCE, "taking a lease")
        if lease is None:
            current = f"running on another coordinator ({await self._holder(run_id)})"
            if known is not None:
                known.current = current
            entry = self.index.get(run_id)
            if entry is not None and entry.summary is not None:
                self.index.note(run_id, entry.summary.model_copy(update={"current": current}))
            return
        try:
            run = await self._load(run_id)
        except BaseException:
            await asyncio.to_thread(self.leases.release, lease)
            raise
        self._tell_problems(run)
        if run.finished or run.unrunnable:  # the index was behind (a crash before its entry): correct it
            await asyncio.to_thread(self.leases.release, lease)
            self._retire(run)
            return
        self.runs[run_id] = run
        run.lease = lease
        reason = "coordinator restarted: resuming run" if at_start else "lease expired: taking the run over"
        self.events.emit(run, "status", reason, data={"resumed": True, "owner": self.owner}, persist=True)
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
                    if run.status != "cancelling" and await call_async(
                        partial(is_cancelled, self.store, run_id), ONCE, "reading a cancel"
                    ):
                        await self._stop_cancelled(run, "cancelled through another coordinator")
                    elif run.lease is not None:
                        await self._renew(run)
                # What other coordinators changed: the index's newest entries (never the runs/ tree).
                for run_id, entry in await call_async(self.index.poll, ONCE, "reading the run index"):
                    if self.index.apply(run_id, entry) and run_id not in self._tasks:
                        self._finished.pop(run_id, None)  # changed elsewhere: read again when asked
                        if entry.finished:
                            self.runs.pop(run_id, None)
                if self.settings.resume_unfinished_runs:
                    for run_id in self.index.unfinished():
                        if run_id not in self._tasks:
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
        tasks = [*self._tasks.values(), *self._cancelling.values(), *self._background]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for run_id in executing:
            run = self.runs.get(run_id)  # None: its cancel finished meanwhile (and released it)
            if run is not None and run.lease is not None:  # released: another coordinator may take it at once
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(asyncio.to_thread(self.leases.release, run.lease), 5)
        self._tasks.clear()
        await self.writer.flush(timeout=5)

    async def _load(self, run_id: str) -> RunState:
        """Load off the event loop; what had to be moved aside waits in `load_problems` for _tell_problems."""
        return await call_async(lambda: load_run(self.store, run_id), ONCE, f"loading run {run_id}")

    def _tell_problems(self, run: RunState) -> None:
        """Tell in the run's events what its loading moved aside (once: the list is emptied)."""
        for problem in run.load_problems:
            self.events.emit(run, "error", f"store: {problem}", data={"quarantine": problem}, persist=True)
        run.load_problems = []

    def _index(self, run: RunState, **update: str) -> None:
        """Queue the run's index entry (written in order with its events, waiting out store outages)."""
        summary = run.summary()
        key, record = self.index.entry(
            run.id, summary.model_copy(update=update) if update else summary, run.unrunnable
        )
        self.writer.queue_event(key, record)

    def _retire(self, run: RunState) -> None:
        """A finished run leaves memory (but for the last few), after its index entry says how it ended."""
        self.runs.pop(run.id, None)
        self._finished[run.id] = run
        self._finished.move_to_end(run.id)
        while len(self._finished) > FINISHED_CACHE:
            self._finished.popitem(last=False)
        self._index(run)

    # ---- API -------------------------------------------------------------------------------------------

    async def services(self) -> ServicesStatus:
        """The generator, the evaluator and every trainer this coordinator sees, each asked GetInfo now
        (concurrently, with a short deadline), with the calls under way to them (survey.py)."""
        return await survey(self.clients, self.settings, self.calls.stats.pending)

    def summaries(self, before: tuple[float, str] | None = None) -> Iterator[RunSummary]:
        """Every run's summary, newest first (by creation, then id), those before `before` only: the runs in
        memory as they are now, the others as the index has them. Read it through before awaiting."""
        indexed = (
            self.runs[run_id].summary() if run_id in self.runs else self.index.entries[run_id].summary
            for run_id in self.index.newest_first(before)
        )
        # A run in memory without an entry yet (none but a test's): merged in its place.
        extra = sorted(
            (run.summary() for run_id, run in self.runs.items() if self.index.get(run_id) is None),
            key=lambda s: (s.created_at, s.id),
            reverse=True,
        )
        extra = [s for s in extra if before is None or (s.created_at, s.id) < before]
        merged = (
            heapq.merge(indexed, extra, key=lambda s: (s.created_at, s.id), reverse=True)
            if extra
            else indexed
        )
        return (summary for summary in merged if summary is not None)

    def _require_ready(self) -> None:
        if not self.ready:
            raise Unavailable("the coordinator is waiting for its object store; try again shortly")

    async def create(self, body: RunCreate) -> RunState:
        """Check everything the request asks for (admission.py) before anything is created."""
        self._require_ready()
        admission.check_counts(body, self.settings.max_passages_per_run)
        admission.check_teachers(body)
        if body.dataset == "demo":
            passages = demo_passages()
        else:
            passages = parse_passages(body.passages, "request body 'passages'")
        if body.limit:
            passages = passages[: body.limit]
        train, heldout = choose_heldout(passages, body)
        passages = train + heldout
        if body.config.mode == "continual":
            stream_orders(body.config, passages)  # an order naming passages the run has not: 400
        if len(passages) > self.settings.max_passages_per_run:
            raise InvalidArgument(
                f"{len(passages)} passages; this coordinator takes at most {self.settings.max_passages_per_run}"
            )
        # A strategy the run sends as a file needs no generator to know it.
        requested = (set(body.config.formats) | {t.format for t in body.teachers}) - set(
            body.config.strategy_texts
        )
        known = self.calls.known_formats
        unknown = sorted(f for f in requested if known and f not in known)
        if unknown:
            raise InvalidArgument(f"unknown self-edit format(s) {unknown}; the generator knows {known}")
        teachers = {
            t.name: (t.format, match_teacher_completions(t.name, t.passages, t.completion_index, heldout))
            for t in body.teachers
        }
        await self.limits.check_creation(body.config, self.clients.trainers)
        await admission.check_store_keys(self.store, body)
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
        self.budget.check(run, self._executing(), self.limits.limits)
        admission.check_message_sizes(run, self.settings.evaluate_max_adapters_per_call)
        # One try, bounded by the store's own timeouts: while the store is away the request gets a 503 and
        # nothing was created. The lease is taken before anyone else can see the spec's run as free.
        lease = await call_async(lambda: self.leases.first(run.id), ONCE, "taking a lease")
        spec = run_spec(run)
        await call_async(lambda: write_spec(self.store, run.id, spec), ONCE, "writing a run spec")
        run.lease = lease
        self.runs[run.id] = run
        self._index(run)
        self.events.emit(
            run,
            "status",
            f"run created: {len(train)} training and {len(heldout)} held-out passages, "
            f"{body.config.rounds} rounds, {run.jobs_total} jobs",
        )
        self._schedule(run)
        return run

    def get(self, run_id: str) -> RunState:
        """A run in memory (unfinished, or finished lately); `find` reads the others from the store."""
        run = self.runs.get(run_id) or self._finished.get(run_id)
        if run is None:
            raise RunNotFound(f"no run {run_id!r}")
        return run

    async def find(self, run_id: str) -> RunState:
        """Any run: from memory, else read from the store (a finished one is then kept among the last few)."""
        run = self.runs.get(run_id) or self._finished.get(run_id)
        if run is not None:
            if run_id in self._finished:
                self._finished.move_to_end(run_id)
            return run
        entry = self.index.get(run_id)
        if entry is None or entry.summary is None:
            raise RunNotFound(f"no run {run_id!r}")
        run = await self._load(run_id)
        self._tell_problems(run)
        if run.finished or run.unrunnable:
            self._finished[run_id] = run
            while len(self._finished) > FINISHED_CACHE:
                self._finished.popitem(last=False)
            self._note_headline(run)
        else:  # unfinished and not here: another coordinator runs it
            run.current = entry.summary.current
        return run

    def _note_headline(self, run: RunState) -> None:
        """A finished run whose entry an older coordinator wrote, without the headline: its summary here gets
        the one its results give, so `GET /v1/runs` lists it from now on (the next snapshot stores it)."""
        entry = self.index.get(run.id)
        if entry is None or entry.summary is None or run.results is None:
            return
        if entry.summary.headline is None and entry.summary.status == run.status:
            self.index.note(run.id, entry.summary.model_copy(update={"headline": run.summary().headline}))

    async def resume(self, run_id: str) -> RunState:
        self._require_ready()
        run = await self.find(run_id)
        if run.unrunnable:
            raise FailedPrecondition(f"run {run_id} {run.error}")
        if run.status in ("cancelled", "cancelling"):
            raise RunCancelled(f"run {run_id} was cancelled; start a new run to do its work again")
        if run.id in self._tasks:
            raise RunRunning(f"run {run_id} is already running")
        if run.status in ("succeeded", "completed_with_errors"):
            raise RunFinished(f"run {run_id} has finished ({run.status})")
        if await call_async(lambda: self.store.exists(run_key(run.id, MANIFEST)), ONCE, "reading a manifest"):
            raise FailedPrecondition(f"run {run_id} has a manifest already")
        self.budget.check(run, self._executing(), self.limits.limits, new=False)
        lease = await call_async(lambda: self.leases.acquire(run_id), ONCE, "taking a lease")
        if lease is None:
            raise FailedPrecondition(
                f"run {run_id} is running on another coordinator ({await self._holder(run_id)})"
            )
        run.lease = lease
        run.error = ""
        self._finished.pop(run.id, None)
        self.runs[run.id] = run
        self._index(run, status="queued")  # before the record that resumes it (index.py)
        self.events.emit(run, "status", "resuming run on request", data={"resumed": True}, persist=True)
        self._schedule(run)
        return run

    async def cancel(self, run_id: str) -> RunState:
        """Stop a run for good (idempotent). Recorded in the store first (one try: 503 while the store is
        away, and nothing changed), so that no coordinator resumes it; then the run is "cancelling" while its
        task stops (_stop_cancelled). Answers once it is "cancelled", or after CANCEL_ANSWER_SECONDS with it
        still "cancelling" (a continual run's steps in flight finish first)."""
        self._require_ready()
        run = await self.find(run_id)
        if run.status == "cancelled":
            return run
        if run.status != "cancelling":
            if run.unrunnable:
                raise FailedPrecondition(f"run {run_id} {run.error}")
            if run.status in ("succeeded", "completed_with_errors"):
                raise RunFinished(f"run {run_id} has finished ({run.status})")
            await call_async(
                lambda: write_cancel(self.store, run, self.owner), ONCE, "recording a cancellation"
            )
            if run.status in ("succeeded", "completed_with_errors"):  # it finished meanwhile: that counts
                raise RunFinished(f"run {run_id} has finished ({run.status})")
        await self._stop_cancelled(run, "cancelled on request", wait=CANCEL_ANSWER_SECONDS)
        return run

    async def delete(self, run_id: str) -> None:
        """Remove a finished run's records (the adapters and datasets it made stay: other runs share them)."""
        self._require_ready()
        run = await self.find(run_id)
        if run.status == "cancelling":
            raise RunRunning(
                f"run {run_id} is cancelling (its work in flight finishes first); delete it once it is cancelled"
            )
        if run.id in self._tasks or not run.finished:
            raise RunRunning(f"run {run_id} is {run.status}; cancel it first (POST /v1/runs/{run_id}/cancel)")
        await self.writer.settle(timeout=5)  # its last events (a cancel's) land before its records go
        await call_async(lambda: delete_run(self.store, run_id), ONCE, f"deleting run {run_id}")
        self.runs.pop(run_id, None)
        self._finished.pop(run_id, None)
        key, record = self.index.entry(run_id, None)
        self.writer.queue_event(key, record)

    async def _stop_cancelled(self, run: RunState, reason: str, wait: float = 0.0) -> None:
        """Stop a run whose cancellation is recorded. Executing here, it is "cancelling" while its task stops
        (its calls cancelled; a continual run's steps in flight finish first, ContinualExperiment._stream),
        still holding its lease, then "cancelled" (_finish_cancel); waits up to `wait` seconds for that. A run
        not executing here is "cancelled" at once."""
        task = self._tasks.get(run.id)
        if task is None or task.done():
            self._tasks.pop(run.id, None)
            await self._finish_cancel(run, None, reason)
            return
        stopping = self._cancelling.get(run.id)
        if stopping is None:
            run.status, run.error = "cancelling", ""
            run.current = CANCELLING[run.config.mode]
            self.events.emit(
                run,
                "status",
                f"run cancelling ({reason}): {run.current}",
                data={"cancelling": True},
                persist=True,
            )
            self._index(run)
            task.cancel()
            stopping = asyncio.create_task(self._finish_cancel(run, task, reason), name=f"cancel-{run.id}")
            self._cancelling[run.id] = stopping
            stopping.add_done_callback(lambda _: self._cancelling.pop(run.id, None))
        if wait:
            await asyncio.wait({stopping}, timeout=wait)

    async def _finish_cancel(self, run: RunState, task: asyncio.Task | None, reason: str) -> None:
        """Once nothing of the run runs any more (its task has ended): "cancelled", its lease released."""
        if task is not None:
            await asyncio.wait({task})
        if run.status in ("succeeded", "completed_with_errors"):  # it finished first: its manifest counts
            return
        run.status, run.current, run.error = "cancelled", "", ""
        run.results = cancelled_results(run)  # a continual run's finished steps
        self.events.emit(run, "status", f"run {reason}", data={"cancelled": True}, persist=True)
        await self._release(run)
        self._retire(run)

    def _executing(self) -> list[RunState]:
        return [self.runs[run_id] for run_id in self._tasks]

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
            self._index(run)
            self.events.emit(run, "status", "running")
            try:
                limits = await self.calls.check(run)
                self.limits.publish(limits)
                continual = run.config.mode == "continual"
                experiment = (ContinualExperiment if continual else Experiment)(
                    run,
                    self.calls,
                    self.events,
                    self.store,
                    self.outage,
                    limits,
                    self.settings.max_concurrent_passages,
                )
                await experiment.run_all()
                run.results = (
                    build_continual_results(run.passages, run.jobs, run.config)
                    if continual
                    else build_results(run.passages, run.jobs, run.config, run.split, run.teachers)
                )
                run.results.reproducibility = reproducibility(run)
                run.results.phase_seconds = {
                    e.data["phase"]: e.data["seconds"] for e in run.events if "phase" in e.data
                }
                results = run.results
                await call_async(
                    lambda: attach_examples(results, self.store),
                    self.outage,
                    "reading examples",
                    self.events.store_retry(run, "reading examples"),
                )
                run.status = "completed_with_errors" if run.jobs_failed else "succeeded"
                run.current = ""
                await self.events.persist(
                    run, run_key(run.id, MANIFEST), manifest(run), "writing the manifest"
                )
                self.events.emit(
                    run, "status", f"run {run.status}", data={"summary": run.results.summary.model_dump()}
                )
                await self._release(run)
            except asyncio.CancelledError:
                if run.lease is not None and run.status not in ("cancelled", "cancelling"):
                    run.current = "stopped by coordinator shutdown; resumes at next start"
                raise
            except LeaseLost as exc:
                self._stop_here(run, str(exc))
            except StoreUnavailable as exc:
                self._fail(run, f"the object store stayed unavailable: {exc.message}")
            except (RunInterrupted, FailedPrecondition) as exc:
                self._fail(run, str(exc))
            except Exception as exc:  # its text may name files: it stays in the log
                log.exception("run failed")
                self._fail(
                    run, f"internal error: {type(exc).__name__} (the coordinator's log has the details)"
                )

            if run.status == "failed":  # waits for a resume, which any coordinator may take
                await self._release(run)
            if run.finished and run.status != "cancelled":  # a cancelled one is retired by _finish_cancel
                self._retire(run)

    async def _release(self, run: RunState) -> None:
        lease, run.lease = run.lease, None
        if lease is not None:
            with contextlib.suppress(StoreUnavailable):
                await call_async(lambda: self.leases.release(lease), ONCE, "releasing a lease")

    def _fail(self, run: RunState, message: str) -> None:
        if run.status in ("cancelled", "cancelling"):  # what its last call said no longer matters
            return
        run.status, run.error, run.current = "failed", message, ""
        self.events.emit(
            run,
            "error",
            f"run failed: {message} (POST /v1/runs/{run.id}/resume to continue)",
            data={"run_failed": True, "reason": message},
        )
