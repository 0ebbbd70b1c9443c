"""Trainer servicer: a fresh LoRA adapter per job, concurrent jobs trained together in groups, progress
streamed, results content-addressed.

A job lives as long as someone waits for it: when its call ends first (the caller cancelled, its deadline
passed, the connection dropped) it leaves its queue, or stops at its next optimizer step while the rest of its
group trains on, and nothing of it is published (a retried call trains it again). Identical calls share one
job, which stops when the last of them has gone. At most `max_queued_jobs` calls are admitted at once."""

from __future__ import annotations

import asyncio
import logging
import tempfile
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import grpc

from seal.v1 import common_pb2, trainer_pb2, trainer_pb2_grpc
from seal_lab import __version__
from seal_lab.errors import AlreadyExists, InvalidArgument, Unavailable
from seal_lab.formats.adapters import (
    ADAPTER_PREFIX,
    AdapterFiles,
    AdapterLimits,
    adapter_meta,
    base_model_ref,
    fetch_adapter,
    has_weights,
    publish_adapter,
)
from seal_lab.formats.bounds import MAX_ID_CHARS, check_length
from seal_lab.formats.datasets import Dataset, TrainingExample, read_dataset
from seal_lab.formats.directive import Directive, DirectiveLimits
from seal_lab.logging import bind_context
from seal_lab.model.grouptrain import (
    GroupJob,
    Schedule,
    TrainingCancelled,
    TrainOutcome,
    TrainProgressEvent,
    train_group,
)
from seal_lab.model.multilora import AdapterWeights, load_peft_folder, lora_targets, save_peft_folder
from seal_lab.serve.callgate import CallGate
from seal_lab.serve.host import ModelHost
from seal_lab.store import ObjectStore, json_bytes, read_record, sha256_hex, validate_key
from seal_lab.store.outage import OutagePolicy, call_async, call_sync, telling, wait_for_store

from .grouping import GroupBatcher
from .settings import TrainerSettings, group_defaults

log = logging.getLogger(__name__)

JOB_PREFIX = "trainer-jobs"
#: Bumped when training changes in a way that makes old results not comparable (part of the job key, with
#: the schedule settings: see `recipe_from_settings`).
TRAINING_RECIPE = "lora-adamw-v2"


def limits_from_settings(settings: TrainerSettings) -> DirectiveLimits:
    return DirectiveLimits(
        max_epochs=settings.max_epochs,
        max_lora_rank=settings.max_lora_rank,
        max_max_length=settings.max_max_length,
        max_batch_size=settings.max_batch_size,
        max_steps=settings.max_steps,
        max_tokens=settings.max_tokens,
    ).with_clamped_default()


def schedule_from_settings(settings: TrainerSettings) -> Schedule:
    return Schedule(settings.warmup_ratio, settings.lr_decay, settings.max_grad_norm)


def recipe_from_settings(settings: TrainerSettings) -> dict[str, Any]:
    """What, besides the job, decides the trained weights (part of every job key and adapter record)."""
    return {
        "name": TRAINING_RECIPE,
        "target_modules": settings.target_modules,
        **asdict(schedule_from_settings(settings)),
        "text_eos": settings.text_eos,
    }


@dataclass(frozen=True)
class TrainJob:
    dataset_key: str
    directive: Directive
    seed: int
    #: The adapter it starts from ("" = a fresh one), and whether it is merged under a fresh one.
    init_adapter_key: str = ""
    merge_init: bool = False

    @property
    def start(self) -> dict[str, Any]:
        """What the job starts from, when not a fresh adapter (part of its key and its adapter's record)."""
        if not self.init_adapter_key:
            return {}
        return {"init_adapter_key": self.init_adapter_key, "merge_init": self.merge_init}

    def key(self, fingerprint: str, recipe: dict[str, Any]) -> str:
        identity = {
            "dataset_key": self.dataset_key,
            "directive": self.directive.as_dict(),
            "seed": self.seed,
            "base_model_fingerprint": fingerprint,
            "recipe": recipe,
            **self.start,  # absent for a fresh adapter: the keys of earlier jobs stay as they were
        }
        return f"{JOB_PREFIX}/{sha256_hex(json_bytes(identity))}.json"


@dataclass
class _Queued:
    """A validated job waiting for its group."""

    job: TrainJob
    job_key: str
    examples: list[TrainingExample]
    on_progress: Callable[[TrainProgressEvent], None]
    #: The adapter the job starts from (`TrainJob.init_adapter_key`), read from the store; None = fresh.
    init: AdapterWeights | None = None
    #: Set when its call ended before its result (cancelled, deadline, disconnect); read by the training thread.
    cancelled: threading.Event = field(default_factory=threading.Event)


def _result_message(record: dict[str, Any], reused: bool) -> trainer_pb2.TrainEvent:
    metrics = record["metrics"]
    return trainer_pb2.TrainEvent(
        result=trainer_pb2.TrainResult(
            adapter_key=record["adapter_key"],
            reused=reused,
            metrics=trainer_pb2.TrainMetrics(
                step_loss=metrics["step_loss"],
                tokens=metrics["tokens"],
                seconds=metrics["seconds"],
                tokens_per_second=metrics["tokens_per_second"],
                steps=metrics["steps"],
                trainable_parameters=metrics["trainable_parameters"],
                group_size=metrics.get("group_size", 1),
            ),
        )
    )


class TrainerServicer(trainer_pb2_grpc.TrainerServicer):
    def __init__(self, store: ObjectStore, host: ModelHost, settings: TrainerSettings) -> None:
        self.store = store
        self.host = host
        self.settings = settings
        self.limits = limits_from_settings(settings)
        modules = settings.target_modules
        self.target_modules: list[str] | str = modules if modules == "all-linear" else modules.split(",")
        # A finished adapter is kept in memory while the store is away, up to this long.
        self.outage = OutagePolicy(max_seconds=settings.store_outage_seconds)
        self.batcher: GroupBatcher[_Queued] | None = None
        self.call_gate = CallGate(settings.max_queued_jobs, "training jobs", "SEAL_TRAINER_MAX_QUEUED_JOBS")
        #: Jobs stopped mid-training (or before it) because every caller had gone away.
        self.jobs_stopped = 0

    async def load(self) -> None:
        await asyncio.gather(self.host.load(), wait_for_store(self.store.check, "trainer"))
        self.shape = group_defaults(self.settings, self.host.loaded.device)
        self.batcher = GroupBatcher(
            self._run_group, self.shape.max_group_size, self.settings.group_window_seconds
        )
        if self.call_gate.limit < self.shape.max_group_size:
            log.warning("SEAL_TRAINER_MAX_QUEUED_JOBS is below the group size: groups will never be full")
        log.info(
            "training groups of up to %d jobs, %d tokens per forward pass in rows of %d, %.2fs window",
            self.shape.max_group_size,
            self.shape.tokens_per_step,
            self.shape.row_tokens,
            self.settings.group_window_seconds,
        )

    def _recorded(self, job_key: str) -> dict[str, Any] | None:
        """The job's record if it is there and whole; an unreadable one is quarantined and the job redone."""
        read = read_record(self.store, job_key, lambda record: _record_problem(self.store, record))
        if read.problem:
            log.warning(
                "job record %s unusable (%s): moved to %s; training again",
                job_key,
                read.problem,
                read.moved_to,
            )
        return read.record

    async def GetInfo(self, request: common_pb2.GetInfoRequest, context: grpc.aio.ServicerContext):
        info = self.host.info(limits=self.limits.to_proto())  # UNAVAILABLE while loading
        info.max_group_size = self._batcher().max_group_size
        return info

    def _batcher(self) -> GroupBatcher[_Queued]:
        if self.batcher is None:
            raise Unavailable("trainer is still loading its model")
        return self.batcher

    def _validate(self, request: trainer_pb2.TrainRequest) -> TrainJob:
        validate_key(request.dataset_key)
        check_length(request.job_id, MAX_ID_CHARS, "job_id")
        if not request.HasField("directive"):
            raise InvalidArgument("directive is required")
        directive = Directive.from_proto(request.directive)
        problems = self.limits.violations(directive)
        if problems:
            raise InvalidArgument("directive outside the trainer's limits: " + "; ".join(problems))
        if request.init_adapter_key:
            validate_key(request.init_adapter_key)
        elif request.merge_init:
            raise InvalidArgument("merge_init needs an init_adapter_key")
        return TrainJob(
            request.dataset_key,
            directive,
            request.seed,
            request.init_adapter_key,
            request.merge_init and bool(request.init_adapter_key),
        )

    def _init_adapter(self, job: TrainJob) -> AdapterWeights | None:
        """The adapter a job starts from, verified against this base model and within this trainer's limits
        (a merge's result too: its rank is the init's plus the directive's)."""
        if not job.init_adapter_key:
            return None
        loaded = self.host.loaded
        limits = AdapterLimits.from_directive_limits(self.limits)
        with tempfile.TemporaryDirectory(prefix="seal-init-") as tmp:
            base_id = base_model_ref(loaded.name).id
            fetch_adapter(
                self.store, job.init_adapter_key, Path(tmp), loaded.fingerprint, limits, base_id=base_id
            )
            init = load_peft_folder(Path(tmp), lora_targets(loaded.model, self.target_modules))
        rank = init.rank + (job.directive.lora_rank if job.merge_init else 0)
        if rank > self.limits.max_lora_rank:
            raise InvalidArgument(
                f"merging {job.init_adapter_key!r} (rank {init.rank}) under a rank-{job.directive.lora_rank} "
                f"adapter gives rank {rank}; this trainer's limit is {self.limits.max_lora_rank}"
            )
        return init

    async def Train(
        self, request: trainer_pb2.TrainRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[trainer_pb2.TrainEvent]:
        job = self._validate(request)
        async with self.call_gate.admit(context):
            async for event in self._train(request, job, context):
                yield event

    async def _train(
        self, request: trainer_pb2.TrainRequest, job: TrainJob, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[trainer_pb2.TrainEvent]:
        loaded = self.host.loaded
        job_key = job.key(loaded.fingerprint, recipe_from_settings(self.settings))
        with bind_context(job_id=request.job_id):
            # Store reads run off the event loop (health and other calls stay responsive) and wait out outages.
            recorded = await call_async(lambda: self._recorded(job_key), self.outage, "reading a job record")
            if recorded is not None:
                log.info("job already trained: %s", job_key)
                yield _result_message(recorded, reused=True)
                return
            # Read the dataset before queueing, so a bad key or bad data fails fast.
            dataset = await call_async(
                lambda: read_dataset(self.store, job.dataset_key), self.outage, "reading a dataset"
            )
            examples = _training_examples(dataset, job.dataset_key, self.settings.max_dataset_examples)
            init = await call_async(lambda: self._init_adapter(job), self.outage, "reading the init adapter")
            loop = asyncio.get_running_loop()
            queue: asyncio.Queue[TrainProgressEvent] = asyncio.Queue()

            def on_progress(event: TrainProgressEvent) -> None:
                loop.call_soon_threadsafe(queue.put_nowait, event)

            queued = _Queued(job, job_key, examples, on_progress, init)
            task = asyncio.ensure_future(self._batcher().submit(queued))

            def caller_gone(*_: object) -> None:
                """The call ended before its job (the caller cancelled, its deadline passed, it vanished):
                a queued job leaves the queue, a training one stops at its next step unless an identical
                call still waits for it. Nothing of it is published."""
                if not task.done():
                    log.info("job %s: its caller went away; cancelling it", request.job_id or job_key)
                    queued.cancelled.set()
                    task.cancel()

            # The handler may be cancelled at any await or at a yield; the call's end is the sure signal.
            context.add_done_callback(caller_gone)
            try:
                while not task.done() or not queue.empty():
                    getter = asyncio.ensure_future(queue.get())
                    try:
                        await asyncio.wait({task, getter}, return_when=asyncio.FIRST_COMPLETED)
                    finally:
                        getter.cancel()
                    if not getter.cancelled() and getter.done():
                        event = getter.result()
                        yield trainer_pb2.TrainEvent(
                            progress=trainer_pb2.TrainProgress(
                                step=event.step,
                                total_steps=event.total_steps,
                                epoch=event.epoch,
                                loss=event.loss,
                                waiting_for=event.waiting_for,
                            )
                        )
            finally:
                caller_gone()
            record, reused = task.result()
            yield _result_message(record, reused)

    async def _run_group(self, group: list[_Queued]) -> list[Any]:
        return await self.host.worker.run(self._train_group, group)

    def _train_group(self, group: list[_Queued]) -> list[tuple[dict[str, Any], bool] | Exception]:
        """Blocking, on the model worker thread: one group at a time; a result or an exception per job."""
        results: list[tuple[dict[str, Any], bool] | Exception | None] = [None] * len(group)
        to_train: dict[str, list[int]] = {}  # job key -> positions in the group (identical calls train once)
        for position, queued in enumerate(group):
            try:
                # An identical job may have finished while this one waited in the queue.
                recorded = call_sync(
                    lambda q=queued: self._recorded(q.job_key), self.outage, "reading a job record"
                )
            except Exception as exc:
                results[position] = exc
                continue
            if recorded is not None:
                results[position] = (recorded, True)
            else:
                to_train.setdefault(queued.job_key, []).append(position)
        firsts = [group[positions[0]] for positions in to_train.values()]
        jobs = [
            # Identical calls train once: their job stops only when every one of them has gone away.
            GroupJob(
                q.examples,
                q.job.directive,
                q.job.seed,
                # Every caller of a shared job sees its progress (whichever call reached the group first).
                lambda event, ps=positions: [group[p].on_progress(event) for p in ps],
                lambda ps=positions: all(group[p].cancelled.is_set() for p in ps),
                q.init,
                q.job.merge_init,
            )
            for q, positions in zip(firsts, to_train.values(), strict=True)
        ]
        outcomes = train_group(
            self.host.loaded,
            jobs,
            self.target_modules,
            tokens_per_step=self.shape.tokens_per_step,
            row_tokens=self.shape.row_tokens,
            schedule=schedule_from_settings(self.settings),
            text_eos=self.settings.text_eos,
        )
        for queued, positions, grouped, outcome in zip(
            firsts, to_train.values(), jobs, outcomes, strict=True
        ):
            try:
                if isinstance(outcome, TrainingCancelled):
                    self.jobs_stopped += 1
                    log.info("stopped %s (%s): nothing published", queued.job_key, outcome.message)
                if isinstance(outcome, Exception):
                    raise outcome
                result: tuple[dict, bool] | Exception = self._store_outcome(queued, outcome, grouped)
            except Exception as exc:
                result = exc
            for rank, position in enumerate(positions):
                duplicate = rank > 0 and not isinstance(result, Exception)
                results[position] = (result[0], True) if duplicate else result  # type: ignore[index]
        return [r if r is not None else RuntimeError("job lost in its group") for r in results]

    def _store_outcome(self, queued: _Queued, outcome: TrainOutcome, grouped: GroupJob) -> tuple[dict, bool]:
        """Save a trained adapter as a peft folder under its content key, then its job record. While the store
        is away, the job's callers hear so (a progress event saying what it waits for)."""
        job, job_key, loaded = queued.job, queued.job_key, self.host.loaded
        assert outcome.adapter is not None
        with tempfile.TemporaryDirectory(prefix="seal-train-") as tmp:
            save_peft_folder(Path(tmp), outcome.adapter, self.target_modules, loaded.model)
            base = base_model_ref(loaded.name)  # its loadable id: the config records no path of this machine
            files = AdapterFiles.from_peft_folder(Path(tmp), base)
        metrics = {
            "step_loss": outcome.step_loss,
            "tokens": outcome.tokens,
            "seconds": round(outcome.seconds, 3),
            "tokens_per_second": round(outcome.tokens_per_second, 1),
            "steps": len(outcome.step_loss),
            "trainable_parameters": outcome.trainable_parameters,
            "examples": len(queued.examples),
            "group_size": outcome.group_size,
        }
        adapter_key = files.key
        meta = adapter_meta(
            loaded.name,
            base,
            loaded.fingerprint,
            dataset_key=job.dataset_key,
            directive=job.directive.as_dict(),
            seed=job.seed,
            target_modules=self.settings.target_modules,
            recipe=recipe_from_settings(self.settings),
            device=loaded.device,
            dtype=loaded.dtype,
            seal_lab_version=__version__,
            metrics=metrics,
            **job.start,
        )
        record = {"adapter_key": adapter_key, "metrics": metrics}
        # The store may be away now: the trained adapter waits in memory (up to the outage bound) rather than
        # being trained again by a retried call.
        steps, loss, notify = len(outcome.step_loss), outcome.step_loss[-1], grouped.on_progress
        on_retry = telling(  # every caller of the job hears what it waits for (TrainProgress.waiting_for)
            "saving the trained adapter, kept in memory meanwhile",
            lambda why: notify and notify(TrainProgressEvent(steps, steps, 0, loss, waiting_for=why)),
        )
        stored = call_sync(lambda: self._save(files, meta, job_key, record), self.outage, "saving", on_retry)
        if stored is not record:  # another trainer recorded the same job first: its adapter is the one
            return stored, True
        log.info(
            "trained %s: %d steps, %d tokens in %.1fs (%.0f tok/s, group of %d), final loss %.3f",
            adapter_key,
            metrics["steps"],
            outcome.tokens,
            outcome.seconds,
            outcome.tokens_per_second,
            outcome.group_size,
            outcome.step_loss[-1],
        )
        return record, False

    def _save(
        self, files: AdapterFiles, meta: dict[str, Any], job_key: str, record: dict[str, Any]
    ) -> dict[str, Any]:
        """Publish the adapter, then write the job record (last: its presence means the adapter is complete;
        write-once: a job another trainer recorded first keeps its record)."""
        publish_adapter(self.store, files, meta)
        try:
            self.store.put_json(job_key, record)
        except AlreadyExists:
            return self.store.get_json(job_key)
        return record


def _record_problem(store: ObjectStore, record: Any) -> str | None:
    """Why a trainer-jobs record cannot be used, or None."""
    if not isinstance(record, dict):
        return "not a JSON object"
    if not isinstance(record.get("adapter_key"), str) or not record["adapter_key"].startswith(
        f"{ADAPTER_PREFIX}/"
    ):
        return "no adapter_key"
    metrics = record.get("metrics")
    needed = ("step_loss", "tokens", "seconds", "tokens_per_second", "steps", "trainable_parameters")
    if not isinstance(metrics, dict) or any(name not in metrics for name in needed):
        return "incomplete metrics"
    if not has_weights(store, record["adapter_key"]):
        return "its adapter's weights are missing"
    return None


def _training_examples(dataset: Dataset, key: str, max_examples: int) -> list[TrainingExample]:
    if not dataset.examples:
        raise InvalidArgument(f"dataset {key!r} has no training examples")
    if len(dataset.examples) > max_examples:
        raise InvalidArgument(
            f"dataset {key!r} has {len(dataset.examples)} examples; the limit is {max_examples}"
        )
    return list(dataset.examples)
