"""The experiment of one run: ReST-EM rounds on the training passages, SEAL's conditions on the held-out ones.

Every job runs unless its record exists, and its record is written once when it ends: a resumed run skips
what was done. A job a service refuses is recorded as failed and the run goes on without it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any, TypeVar

from seal_lab.errors import FailedPrecondition
from seal_lab.formats.directive import Directive, DirectiveLimits
from seal_lab.formats.passages import Passage, retention_questions
from seal_lab.logging import bind_context
from seal_lab.store import ObjectStore
from seal_lab.store.outage import OutagePolicy, call_async

from ..results.rounds import round_passages
from ..run.jobs import JobName, policy_condition, teacher_condition
from ..run.records import (
    BestSelfEdit,
    DirectiveRecord,
    EvaluationRecord,
    FailedRecord,
    JobRecord,
    PolicyRecord,
    SelfEdit,
    SelfEditsRecord,
    TrainRecord,
)
from ..run.schemas import RunConfig
from .calls import JobFailed, RunInterrupted, ServiceCalls
from .events import EventLog
from .policy import build_policy_dataset
from .records import job_key
from .state import RunState

#: The record a job's work returns (any kind but a failure, which the job itself records).
Done = TypeVar("Done", SelfEditsRecord, TrainRecord, PolicyRecord, EvaluationRecord)

#: Training seeds of a self-edit's reward: config.seed, then + this stride per extra seed.
REWARD_SEED_STRIDE = 1000
#: Sampling seeds of held-out self-edits sit apart from those of the training formats.
HELDOUT_FORMAT_INDEX = 50


class Experiment:
    """One run's experiment, with what is fixed once its services are checked (the trainer's directive
    limits, the gate on concurrent passages) and what moves between rounds (the policy adapter)."""

    def __init__(
        self,
        run: RunState,
        calls: ServiceCalls,
        events: EventLog,
        store: ObjectStore,
        outage: OutagePolicy,
        limits: DirectiveLimits,
        max_concurrent_passages: int,
    ) -> None:
        self.run = run
        self.calls = calls
        self.events = events
        self.store = store
        self.outage = outage
        self.limits = limits
        self.gate = asyncio.Semaphore(max_concurrent_passages)
        self.policy_key = run.config.policy_adapter_key

    async def run_all(self) -> None:
        run, config = self.run, self.run.config
        generator = run.services.generator
        if config.rounds and (generator is None or generator.backend != "local"):
            raise FailedPrecondition(
                "ReST-EM rounds fine-tune the generator's own model; this generator uses a remote teacher"
            )
        run.policy_adapter_key = self.policy_key
        if run.split.heldout:  # no adapter, passage only, teachers, and the round-0 generator
            async with self._phase("heldout-p0"):
                await self._heldout(0, fixed_conditions=True)
        for round_index in range(max(1, config.rounds)):
            run.round = round_index
            async with self._phase(f"round-{round_index}"):
                await _all_or_none(self._passage(i, round_index) for i in run.split.train)
            if not config.rounds:
                break
            async with self._phase(f"policy-r{round_index + 1}"):
                self.policy_key = await self._update_policy(round_index)
            run.policy_adapter_key = self.policy_key
            if run.split.heldout:
                async with self._phase(f"heldout-p{round_index + 1}"):
                    await self._heldout(round_index + 1, fixed_conditions=False)

    @contextlib.asynccontextmanager
    async def _phase(self, phase: str) -> AsyncIterator[None]:
        """Wall-clock seconds of one phase (a round, a policy update...), kept as a persisted event.

        A phase resumed after a restart reports the time of its last stretch only.
        """
        started = time.perf_counter()
        yield
        seconds = round(time.perf_counter() - started, 1)
        self.events.emit(
            self.run,
            "status",
            f"{phase} done in {seconds:.0f}s",
            data={"phase": phase, "seconds": seconds},
            persist=True,
        )

    def stage(self, job: JobName) -> str:
        """Where in the run a job is, as its progress lines say it: `round 1`."""
        return f"round {self.run.round}"

    async def _job(self, job: JobName, work: Callable[[], Awaitable[Done]]) -> Done | None:
        """Run one job unless its record exists; record the result (or a permanent failure) write-once."""
        run, name = self.run, str(job)
        if name in run.jobs:
            record: JobRecord = run.jobs[name]
            return None if isinstance(record, FailedRecord) else record  # type: ignore[return-value]
        passage_id = "" if job.index is None else run.passages[job.index].passage_id
        where = "run" if job.index is None else f"passage {job.index + 1}/{len(run.passages)}"
        run.current = f"{self.stage(job)}, {where}: {job.label}"
        self.events.emit(run, "progress", run.current, passage_id=passage_id, job=name)
        try:
            with bind_context(
                job_id=name
            ):  # on its log lines, and sent to the services (seal_lab.rpc.callids)
                record = await work()
        except JobFailed as exc:
            record = FailedRecord(error=str(exc))
            self.events.emit(run, "error", f"job {name} failed: {exc}", passage_id=passage_id, job=name)
        await self.events.persist(run, job_key(run.id, name), record, f"recording job {name}")
        run.jobs[name] = record
        if isinstance(record, FailedRecord):
            return None
        self.events.emit(run, "job", f"done {name}", passage_id=passage_id, job=name, data=job_digest(record))
        return record  # type: ignore[return-value]

    async def _passage(self, index: int, round_index: int) -> None:
        run, calls, config = self.run, self.calls, self.run.config
        passage = run.passages[index]
        async with self.gate:
            await self._job(JobName.baseline(index), lambda: calls.evaluate(run, passage, [""]))
            adapter_keys: list[str] = []
            for format_index, edit_format in enumerate(config.formats):
                generated = await self._job(
                    JobName.generate(index, round_index, edit_format),
                    lambda f=edit_format, fi=format_index: calls.generate(
                        run,
                        passage,
                        f,
                        _sampling_seed(config, index, fi),
                        self.limits,
                        self.policy_key,
                        config.k,
                    ),
                )
                if generated is None:
                    continue
                trials = [
                    (
                        JobName.train(index, round_index, edit.format, edit.sample_index, trial, seed),
                        edit,
                        directive,
                    )
                    for edit in generated.self_edits
                    for trial, directive in enumerate(directive_trials(edit, config, self.limits))
                    for seed in range(config.reward_seeds)
                ]
                trained = await _all_or_none(
                    self._job(
                        job,
                        lambda j=job, e=edit, d=directive: calls.train(
                            run,
                            passage,
                            e.dataset_key,
                            d,
                            j.label,
                            seed_offset=REWARD_SEED_STRIDE * j.seed,
                        ),
                    )
                    for job, edit, directive in trials
                )
                adapter_keys += [t.adapter_key for t in trained if t is not None]
            adapter_keys = list(dict.fromkeys(adapter_keys))  # identical jobs share one adapter
            if adapter_keys:
                await self._job(
                    JobName.evaluate(index, round_index), lambda: calls.evaluate(run, passage, adapter_keys)
                )
            if adapter_keys and config.retention:
                await self._job(
                    JobName.retention(index, round_index),
                    lambda: calls.evaluate(
                        run, passage, ["", *adapter_keys], retention_questions(run.config.retention_questions)
                    ),
                )

    async def _update_policy(self, round_index: int) -> str:
        """ReST-EM's M-step: fine-tune the generator's policy on this round's winning self-edits."""
        run, policy_key = self.run, self.policy_key
        job = JobName.policy(round_index)

        async def work() -> PolicyRecord:
            passages = round_passages(run.passages, run.split.train, run.jobs, run.config, round_index)
            winners = [
                BestSelfEdit.model_validate({"passage_id": p.passage_id, **p.best.model_dump()})
                for p in passages
                if p.best is not None and p.best.reward > run.config.min_reward
            ]
            record = {"round": round_index, "previous_policy_adapter_key": policy_key, "winners": winners}
            if not winners:
                self.events.emit(
                    run, "status", f"round {round_index}: no winning self-edit; the policy stays"
                )
                return PolicyRecord(**record, adapter_key=policy_key, skipped="no self-edit beat min_reward")
            dataset_key, examples = await call_async(
                lambda: build_policy_dataset(
                    self.store, winners, directives=run.config.self_edit_directive == "generated"
                ),
                self.outage,
                "building the policy dataset",
                self.events.store_retry(run, "building the policy dataset"),
            )
            if not examples:
                return PolicyRecord(
                    **record, adapter_key=policy_key, skipped="the winners carry no policy examples"
                )
            directive = self.limits.clamp(Directive(**run.config.policy_directive.model_dump()))
            trained = await self.calls.train(
                run, None, dataset_key, directive, job.label, seed_offset=round_index
            )
            self.events.emit(
                run,
                "status",
                f"round {round_index}: policy fine-tuned on {len(winners)} winning self-edits "
                f"({examples} examples) -> {trained.adapter_key}",
            )
            return PolicyRecord.model_validate(
                {**record, **trained.model_dump(), "dataset_key": dataset_key, "examples": examples}
            )

        record = await self._job(job, work)
        if record is None:
            raise RunInterrupted(f"the policy update after round {round_index} failed (see the run's events)")
        return record.adapter_key or ""

    async def _heldout(self, policy_index: int, fixed_conditions: bool) -> None:
        """SEAL's protocol on passages the policy never trained on: one self-edit, one adapter, the questions."""
        run, calls = self.run, self.calls
        edit_format = run.config.heldout_edit_format
        policy_key = self.policy_key

        async def one(index: int) -> None:
            passage = run.passages[index]
            async with self.gate:
                if fixed_conditions:
                    await self._job(JobName.baseline(index), lambda: calls.evaluate(run, passage, [""]))
                    await self._condition(
                        index,
                        "passage",
                        lambda: calls.import_(run, passage, edit_format, [""], "passage-only", self.limits),
                    )
                    for name, (teacher_format, completions) in run.teachers.items():
                        if passage.passage_id in completions:
                            await self._condition(
                                index,
                                teacher_condition(name),
                                lambda n=name, f=teacher_format, c=completions: calls.import_(
                                    run, passage, f, [c[passage.passage_id]], f"teacher:{n}", self.limits
                                ),
                            )
                await self._condition(
                    index,
                    policy_condition(policy_index),
                    lambda: calls.generate(
                        run,
                        passage,
                        edit_format,
                        _sampling_seed(run.config, index, HELDOUT_FORMAT_INDEX),
                        self.limits,
                        policy_key,
                        1,
                    ),
                )

        run.current = f"held-out passages with the policy of round {policy_index}"
        await _all_or_none(one(i) for i in run.split.heldout)

    async def _condition(
        self, index: int, condition: str, make_self_edit: Callable[[], Awaitable[SelfEditsRecord]]
    ) -> None:
        run, calls = self.run, self.calls
        passage = run.passages[index]

        def job(step: str) -> JobName:
            return JobName.heldout(index, condition, step)

        made = await self._job(job("edit"), make_self_edit)
        if made is None:
            return
        edit = made.self_edits[0]
        directive = (
            recorded_directive(edit.directive)
            if run.config.conditions_directive == "generated"
            else self.limits.default
        )
        override = run.config.heldout_directive
        # e.g. a token budget for every condition (refused at creation when beyond the trainer's limits)
        if override is not None:
            directive = self.limits.overridden(directive, override.fields_set())
        train = job("train")
        trained = await self._job(
            train, lambda: calls.train(run, passage, edit.dataset_key, directive, train.label)
        )
        if trained is None:
            return
        key = trained.adapter_key or ""
        await self._job(job("evaluate"), lambda: calls.evaluate(run, passage, [key]))
        other = _control_passage(run, index)
        if other is not None:  # specificity: the same adapter on another passage's questions
            await self._job(job("control"), lambda: calls.evaluate(run, other, ["", key]))
        if run.heldout_retention(index):
            await self._job(
                job("retention"),
                lambda: calls.evaluate(
                    run, passage, ["", key], retention_questions(run.config.retention_questions)
                ),
            )


def _sampling_seed(config: RunConfig, index: int, format_index: int) -> int:
    return config.seed * 1_000_003 + index * 101 + format_index


def directive_trials(edit: SelfEdit, config: RunConfig, limits: DirectiveLimits) -> list[Directive]:
    """The directives a self-edit is trained with: trial 0 is the trainer's default (`self_edit_directive`
    "default") or the self-edit's own ("generated"), then each directive-search variant over it."""
    if config.self_edit_directive == "default":
        own = limits.default
    else:
        own = Directive(**{**limits.default.as_dict(), **edit.directive.values()})
    return [own] + [limits.overridden(own, override.fields_set()) for override in config.directive_search]


def recorded_directive(recorded: DirectiveRecord) -> Directive:
    """A self-edit record's directive as the Train call always sent it: a field the record lacks (one written
    before the field existed) is the proto's 0."""
    values = recorded.values()
    return Directive(**{name: values.get(name, 0) for name in Directive.__dataclass_fields__})


def _control_passage(run: RunState, index: int) -> Passage | None:
    """The held-out passage after `index` (cyclically): its questions are the specificity control."""
    held = run.split.heldout
    if not run.config.specificity_control or len(held) < 2 or index not in held:
        return None
    return run.passages[held[(held.index(index) + 1) % len(held)]]


async def _all_or_none(coroutines: Iterable[Awaitable[Any]]) -> list[Any]:
    """Run concurrently; if one fails (or the run is cancelled), cancel the others before re-raising."""
    tasks = [asyncio.ensure_future(c) for c in coroutines]
    try:
        return await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


def job_digest(record: JobRecord) -> dict[str, Any]:
    """A small view of a job record for progress events."""
    if isinstance(record, TrainRecord | PolicyRecord) and "adapter_key" in record.model_fields_set:
        return {
            "adapter_key": record.adapter_key,
            "reused": record.reused,
            "skipped": getattr(record, "skipped", ""),
            **(record.metrics.model_dump() if record.metrics is not None else {}),
        }
    if isinstance(record, SelfEditsRecord):
        return {"self_edits": len(record.self_edits), "seconds": record.seconds}
    if isinstance(record, EvaluationRecord):
        return {key or "baseline": e.mean.model_dump() for key, e in record.evaluations.items()}
    return {}
