"""The inner loop, run by the coordinator: baseline -> K self-edits -> K adapters -> scores -> reward -> best.

Every finished job is written to the store as a write-once record (`runs/<id>/jobs/...`), so a restarted
coordinator resumes an unfinished run without redoing finished jobs. The run's manifest is written last.
A service that is down is retried with backoff and shows up in the run's events; a request a service
refuses (bad input) fails that job only, and the rest of the run goes on.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import grpc

from seal.v1 import common_pb2, evaluator_pb2, generator_pb2, trainer_pb2
from seal_lab.data import (
    Passage,
    Question,
    demo_passages,
    parse_passages,
    passages_to_json,
    retention_questions,
)
from seal_lab.errors import FailedPrecondition, InvalidArgument, NotFound
from seal_lab.grpc_client import RETRYABLE_CODES
from seal_lab.logging import bind_context
from seal_lab.store import ObjectStore

from .clients import ServiceClients
from .results import build_results
from .schemas import RunConfig, RunCreate, RunDetail, RunEvent, RunSummary
from .settings import CoordinatorSettings

log = logging.getLogger(__name__)

RUNS_PREFIX = "runs"
MAX_EVENTS_IN_MEMORY = 2000
_DIRECTIVE_SOURCES = {
    generator_pb2.DIRECTIVE_SOURCE_PARSED: "parsed",
    generator_pb2.DIRECTIVE_SOURCE_CLAMPED: "clamped",
    generator_pb2.DIRECTIVE_SOURCE_PARTIAL: "partial",
    generator_pb2.DIRECTIVE_SOURCE_DEFAULT: "default",
}


class JobFailed(Exception):
    """A service refused a job (bad input, foreign adapter...): that job fails, the run goes on."""


class RunInterrupted(Exception):
    """A service stayed unreachable past the retry budget: the run stops and can be resumed."""


def new_run_id() -> str:
    return f"run-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}-{secrets.token_hex(3)}"


def _run_key(run_id: str, name: str) -> str:
    return f"{RUNS_PREFIX}/{run_id}/{name}"


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

    @property
    def jobs_total(self) -> int:
        # baseline, evaluate, (retention), and per format: generate + K trainings
        per_passage = 2 + self.config.retention + len(self.config.formats) * (1 + self.config.k)
        return per_passage * len(self.passages)

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

    # ---- lifecycle -------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Load every run recorded in the store; resume the unfinished ones."""
        for key in self.store.list_keys(f"{RUNS_PREFIX}/"):
            if key.endswith("/spec.json"):
                run = self._load_run(key.split("/")[1])
                self.runs[run.id] = run
                if not run.finished and self.settings.resume_unfinished_runs:
                    self._event(
                        run,
                        "status",
                        "coordinator restarted: resuming run",
                        data={"resumed": True},
                        persist=True,
                    )
                    self._schedule(run)

    async def shutdown(self) -> None:
        """Stop executing (runs stay unfinished in the store and resume at the next start)."""
        for task in self._tasks.values():
            task.cancel()
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)
        self._tasks.clear()

    def _load_run(self, run_id: str) -> RunState:
        spec = self.store.get_json(_run_key(run_id, "spec.json"))
        run = RunState(
            id=run_id,
            name=spec["name"],
            config=RunConfig(**spec["config"]),
            passages=parse_passages(spec["passages"], f"run {run_id}"),
            created_at=spec["created_at"],
            updated_at=spec["created_at"],
        )
        for key in self.store.list_keys(_run_key(run_id, "jobs/")):
            run.jobs[key.rsplit("/", 1)[1].removesuffix(".json")] = self.store.get_json(key)
        for key in self.store.list_keys(_run_key(run_id, "events/")):
            event = RunEvent(**self.store.get_json(key))
            run.events.append(event.model_copy(update={"seq": len(run.events)}))
            run.retries += event.kind == "retry"
            if event.data.get("run_failed"):  # failed runs wait for an explicit resume
                run.status, run.error = "failed", event.data.get("reason", event.message)
            elif event.data.get("resumed"):
                run.status, run.error = "queued", ""
        if self.store.exists(_run_key(run_id, "manifest.json")):
            manifest = self.store.get_json(_run_key(run_id, "manifest.json"))
            run.status, run.error = manifest["status"], manifest.get("error", "")
            run.results, run.services = manifest["results"], manifest.get("services", {})
            run.updated_at = manifest["finished_at"]
        return run

    # ---- API -------------------------------------------------------------------------------------------

    def create(self, body: RunCreate) -> RunState:
        if body.dataset == "demo":
            passages = demo_passages()
        else:
            passages = parse_passages(body.passages, "request body 'passages'")
        if body.limit:
            passages = passages[: body.limit]
        if len(passages) > self.settings.max_passages_per_run:
            raise InvalidArgument(
                f"{len(passages)} passages; this coordinator takes at most {self.settings.max_passages_per_run}"
            )
        unknown = [f for f in body.config.formats if self._known_formats and f not in self._known_formats]
        if unknown:
            raise InvalidArgument(
                f"unknown self-edit format(s) {unknown}; the generator knows {self._known_formats}"
            )
        now = time.time()
        run = RunState(new_run_id(), body.name, body.config, passages, now, updated_at=now)
        spec = {
            "id": run.id,
            "name": run.name,
            "created_at": now,
            "config": body.config.model_dump(),
            "passages": passages_to_json(passages),
        }
        self.store.put_json(_run_key(run.id, "spec.json"), spec)
        self.runs[run.id] = run
        self._event(run, "status", f"run created: {len(passages)} passages, {run.jobs_total} jobs")
        self._schedule(run)
        return run

    def get(self, run_id: str) -> RunState:
        try:
            return self.runs[run_id]
        except KeyError:
            raise NotFound(f"no run {run_id!r}") from None

    def resume(self, run_id: str) -> RunState:
        run = self.get(run_id)
        if run.id in self._tasks:
            raise FailedPrecondition(f"run {run_id} is already running")
        if run.status in ("succeeded", "completed_with_errors"):
            raise FailedPrecondition(f"run {run_id} has finished ({run.status})")
        if self.store.exists(_run_key(run.id, "manifest.json")):
            raise FailedPrecondition(f"run {run_id} has a manifest already")
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
        persist: bool = False,
    ) -> None:
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
        if kind in ("retry", "error"):
            run.retries += kind == "retry"
            persist = True
        if persist:  # failures survive a coordinator restart
            stamp = f"{time.time_ns():020d}"
            self.store.put_json(_run_key(run.id, f"events/{stamp}.json"), event.model_dump())
        log.log(logging.WARNING if kind in ("retry", "error") else logging.INFO, "%s", message)
        run.changed.set()
        run.changed = asyncio.Event()

    # ---- execution -------------------------------------------------------------------------------------

    def _schedule(self, run: RunState) -> None:
        task = asyncio.create_task(self._execute(run), name=run.id)
        self._tasks[run.id] = task
        task.add_done_callback(lambda _: self._tasks.pop(run.id, None))

    async def _execute(self, run: RunState) -> None:
        with bind_context(run_id=run.id):
            run.status = "running"
            self._event(run, "status", "running")
            try:
                limits = await self._check_services(run)
                gate = asyncio.Semaphore(self.settings.max_concurrent_passages)
                await _all_or_none(self._passage(run, i, p, limits, gate) for i, p in enumerate(run.passages))
                run.results = build_results(run.passages, run.jobs, run.config)
                run.status = "completed_with_errors" if run.jobs_failed else "succeeded"
                run.current = ""
                self._write_manifest(run)
                self._event(run, "status", f"run {run.status}", data={"summary": run.results["summary"]})
            except asyncio.CancelledError:
                run.current = "stopped by coordinator shutdown; resumes at next start"
                raise
            except (RunInterrupted, FailedPrecondition) as exc:
                self._fail(run, str(exc))
            except Exception as exc:
                log.exception("run failed")
                self._fail(run, f"internal error: {type(exc).__name__}: {exc}")

    def _fail(self, run: RunState, message: str) -> None:
        run.status, run.error, run.current = "failed", message, ""
        self._event(
            run,
            "error",
            f"run failed: {message} (POST /v1/runs/{run.id}/resume to continue)",
            data={"run_failed": True, "reason": message},
        )

    def _write_manifest(self, run: RunState) -> None:
        manifest = {
            "id": run.id,
            "status": run.status,
            "error": run.error,
            "finished_at": time.time(),
            "services": run.services,
            "job_keys": sorted(run.jobs),
            "results": run.results,
        }
        self.store.put_json(_run_key(run.id, "manifest.json"), manifest)

    async def _call(
        self, run: RunState, service: str, what: str, attempt_fn: Callable[[int, str], Awaitable[Any]]
    ) -> Any:
        """Call a service, retrying while it is unreachable. `attempt_fn(attempt, last_failed_address)`."""
        last_address = ""
        for attempt in range(1, self.settings.max_attempts + 1):
            try:
                return await attempt_fn(attempt, last_address)
            except grpc.aio.AioRpcError as exc:
                if exc.code() not in RETRYABLE_CODES:
                    raise JobFailed(f"{service} refused {what}: {_rpc_message(exc)}") from None
                last_address = getattr(exc, "seal_address", "")
                if attempt == self.settings.max_attempts:
                    raise RunInterrupted(
                        f"{service} unavailable for {what} after {attempt} attempts: {_rpc_message(exc)}"
                    ) from None
                delay = min(
                    self.settings.max_backoff_seconds,
                    self.settings.initial_backoff_seconds * 2 ** (attempt - 1),
                )
                where = f" at {last_address}" if last_address else ""
                self._event(
                    run,
                    "retry",
                    f"{service}{where} failed during {what} ({_rpc_message(exc)}); "
                    f"retry {attempt}/{self.settings.max_attempts - 1} in {delay:.0f}s",
                    data={"service": service, "address": last_address, "code": exc.code().name},
                )
                await asyncio.sleep(delay)
        raise AssertionError("unreachable")

    async def _check_services(self, run: RunState) -> common_pb2.DirectiveLimits:
        """All services must serve the same base model; the trainer's limits bound every directive."""
        request = common_pb2.GetInfoRequest()
        timeout = self.settings.info_timeout_seconds
        run.current = "checking services"

        async def info(stub: Any, address: str) -> common_pb2.ServiceInfo:
            try:
                return await stub.GetInfo(request, timeout=timeout)
            except grpc.aio.AioRpcError as exc:
                exc.seal_address = address
                raise

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
                _info_dict(t, e.address)
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
        return trainers[0].limits

    async def _job(
        self, run: RunState, index: int, name: str, work: Callable[[], Awaitable[dict[str, Any]]]
    ) -> dict[str, Any] | None:
        """Run one job unless its record exists; record the result (or a permanent failure) write-once."""
        job_name = f"{index:04d}-{name}"
        if job_name in run.jobs:
            record = run.jobs[job_name]
            return None if "error" in record else record
        passage_id = run.passages[index].passage_id
        run.current = f"passage {index + 1}/{len(run.passages)}: {name}"
        self._event(run, "progress", run.current, passage_id=passage_id, job=job_name)
        try:
            record = await work()
        except JobFailed as exc:
            record = {"error": str(exc)}
            self._event(run, "error", f"job {job_name} failed: {exc}", passage_id=passage_id, job=job_name)
        self.store.put_json(_run_key(run.id, f"jobs/{job_name}.json"), record)
        run.jobs[job_name] = record
        if "error" not in record:
            self._event(
                run, "job", f"done {job_name}", passage_id=passage_id, job=job_name, data=_job_digest(record)
            )
        return None if "error" in record else record

    async def _passage(
        self, run: RunState, index: int, passage: Passage, limits: Any, gate: asyncio.Semaphore
    ) -> None:
        async with gate:
            await self._job(run, index, "baseline", lambda: self._evaluate(run, passage, [""]))
            adapter_keys: list[str] = []
            for format_index, edit_format in enumerate(run.config.formats):
                generated = await self._job(
                    run,
                    index,
                    f"generate-{edit_format}",
                    lambda f=edit_format, fi=format_index: self._generate(run, index, fi, passage, f, limits),
                )
                if generated is None:
                    continue
                trained = await _all_or_none(
                    self._job(
                        run,
                        index,
                        f"train-{edit_format}-{edit['sample_index']}",
                        lambda e=edit: self._train(run, passage, e),
                    )
                    for edit in generated["self_edits"]
                )
                adapter_keys += [t["adapter_key"] for t in trained if t is not None]
            if adapter_keys:
                await self._job(run, index, "evaluate", lambda: self._evaluate(run, passage, adapter_keys))
            if adapter_keys and run.config.retention:
                await self._job(
                    run,
                    index,
                    "retention",
                    lambda: self._evaluate(run, passage, ["", *adapter_keys], retention_questions()),
                )

    async def _generate(
        self, run: RunState, index: int, format_index: int, passage: Passage, edit_format: str, limits: Any
    ) -> dict[str, Any]:
        config = run.config
        request = generator_pb2.GenerateRequest(
            passage=generator_pb2.Passage(
                passage_id=passage.passage_id, title=passage.title, context=passage.context
            ),
            format=edit_format,
            num_samples=config.k,
            sampling=generator_pb2.SamplingParams(
                temperature=config.temperature,
                top_p=config.top_p,
                max_new_tokens=config.max_new_tokens,
                seed=config.seed * 1_000_003 + index * 101 + format_index,
            ),
            policy_adapter_key=config.policy_adapter_key,
            limits=limits,
            include_passage=config.include_passage,
            run_id=run.id,
        )

        async def attempt(*_: Any) -> generator_pb2.GenerateResponse:
            async with self.clients.generator_slot:
                try:
                    return await self.clients.generator.Generate(
                        request, timeout=self.settings.generate_timeout_seconds
                    )
                except grpc.aio.AioRpcError as exc:
                    exc.seal_address = self.settings.generator_address
                    raise

        response = await self._call(run, "generator", f"self-edits for {passage.passage_id}", attempt)
        return {
            "seconds": response.seconds,
            "self_edits": [
                {
                    "dataset_key": e.dataset_key,
                    "format": e.format,
                    "sample_index": e.sample_index,
                    "directive": {f.name: v for f, v in e.directive.ListFields()},
                    "directive_source": _DIRECTIVE_SOURCES.get(e.directive_source, "unspecified"),
                    "directive_notes": list(e.directive_notes),
                    "num_texts": e.num_texts,
                    "preview": e.preview,
                    "generated_tokens": e.generated_tokens,
                }
                for e in response.self_edits
            ],
        }

    async def _train(self, run: RunState, passage: Passage, edit: dict[str, Any]) -> dict[str, Any]:
        request = trainer_pb2.TrainRequest(
            dataset_key=edit["dataset_key"],
            directive=common_pb2.Directive(**edit["directive"]),
            seed=run.config.seed,
            job_id=f"{run.id}/{passage.passage_id}/{edit['format']}-{edit['sample_index']}",
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
                                f"training {passage.passage_id} {edit['format']}-{edit['sample_index']} on "
                                f"{trainer.address}: step {p.step}/{p.total_steps} loss {p.loss:.3f}"
                            )
                            run.changed.set()
                            run.changed = asyncio.Event()
                        else:
                            r = event.result
                            return {
                                "adapter_key": r.adapter_key,
                                "reused": r.reused,
                                "trainer": trainer.address,
                                "metrics": {
                                    "steps": r.metrics.steps,
                                    "tokens": r.metrics.tokens,
                                    "seconds": r.metrics.seconds,
                                    "tokens_per_second": r.metrics.tokens_per_second,
                                    "final_loss": r.metrics.step_loss[-1] if r.metrics.step_loss else None,
                                    "first_loss": r.metrics.step_loss[0] if r.metrics.step_loss else None,
                                },
                            }
                except grpc.aio.AioRpcError as exc:
                    exc.seal_address = trainer.address
                    raise
            raise JobFailed(f"trainer at {trainer.address} ended the stream without a result")

        return await self._call(run, "trainer", f"training {edit['dataset_key']}", attempt)

    async def _evaluate(
        self,
        run: RunState,
        passage: Passage,
        adapter_keys: list[str],
        questions: list[Question] | None = None,
    ) -> dict[str, Any]:
        """Evaluate adapters on the passage's questions (or on `questions`, e.g. the retention set)."""
        request = evaluator_pb2.EvaluateRequest(
            questions=[
                evaluator_pb2.Question(
                    question_id=q.question_id, question=q.question, answers=list(q.answers)
                )
                for q in (questions or passage.questions)
            ],
            adapter_keys=adapter_keys,
            max_new_tokens=run.config.eval_max_new_tokens,
            run_id=run.id,
        )

        async def attempt(*_: Any) -> evaluator_pb2.EvaluateResponse:
            async with self.clients.evaluator_slot:
                try:
                    return await self.clients.evaluator.Evaluate(
                        request, timeout=self.settings.evaluate_timeout_seconds
                    )
                except grpc.aio.AioRpcError as exc:
                    exc.seal_address = self.settings.evaluator_address
                    raise

        what = "baseline" if adapter_keys == [""] else f"{len(adapter_keys)} adapters"
        if questions is not None:
            what += " on the retention set"
        response = await self._call(run, "evaluator", f"{what} for {passage.passage_id}", attempt)
        return {
            "seconds": response.seconds,
            "evaluations": {
                e.adapter_key: {
                    "mean": _scores(e.mean),
                    "cached": e.cached,
                    "answers": [
                        {"question_id": a.question_id, "answer": a.answer, "scores": _scores(a.scores)}
                        for a in e.answers
                    ],
                }
                for e in response.evaluations
            },
        }


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


def _scores(message: evaluator_pb2.Scores) -> dict[str, float]:
    return {"exact_match": message.exact_match, "f1": message.f1, "contains": message.contains}


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
    }


def _job_digest(record: dict[str, Any]) -> dict[str, Any]:
    """A small view of a job record for progress events."""
    if "adapter_key" in record:
        return {"adapter_key": record["adapter_key"], "reused": record["reused"], **record["metrics"]}
    if "self_edits" in record:
        return {"self_edits": len(record["self_edits"]), "seconds": record["seconds"]}
    if "evaluations" in record:
        return {key or "baseline": e["mean"] for key, e in record["evaluations"].items()}
    return {}
