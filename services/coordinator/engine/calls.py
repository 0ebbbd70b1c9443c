"""Calls to the generator, the trainers and the evaluator, on behalf of a run.

Every call has a deadline. A service that is unreachable (or busy: RESOURCE_EXHAUSTED marked so) is retried
with jittered backoff (a training job on another trainer when there is one), each retry an event of the run;
one that refuses a request (bad input, a message over the size limit, any other RESOURCE_EXHAUSTED, a
failed precondition, no credentials, INTERNAL) fails that job only (JobFailed); one that answers "the store
is unavailable" pauses the run without using up its attempts. A service that stays away past a call's
attempts, or a run that has spent its retry budget over all its calls, interrupts the run (RunInterrupted).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any

import grpc

from seal.v1 import common_pb2
from seal_lab.formats.directive import Directive, DirectiveLimits
from seal_lab.formats.passages import Passage, Question
from seal_lab.rpc.client import RETRYABLE_CODES, is_busy, is_store_outage
from seal_lab.store.outage import OutagePolicy

from ..run.records import EvaluationRecord, RunServices, SelfEditsRecord, TrainRecord
from ..settings import CoordinatorSettings
from . import convert
from .callstats import CallStats, counted_call
from .clients import ServiceClients
from .events import EventLog, sparse
from .servicecheck import check_services
from .state import RunState


class JobFailed(Exception):
    """A service refused a job (bad input, foreign adapter...): that job fails, the run goes on."""


class RunInterrupted(Exception):
    """A service stayed unreachable past the retry budget: the run stops and can be resumed."""


class ServiceCallFailed(Exception):
    """A gRPC call that failed: the address that failed it (to route a retry elsewhere) and its status."""

    def __init__(
        self,
        address: str,
        code: grpc.StatusCode,
        details: str | None,
        store_outage: bool = False,
        busy: bool = False,
    ) -> None:
        super().__init__(f"{address}: {code.name}: {details}")
        self.address, self.code, self.details = address, code, details
        #: The service answered UNAVAILABLE because the object store is away, not because it is.
        self.store_outage = store_outage
        #: The service answered RESOURCE_EXHAUSTED because its queue is full: worth trying again.
        self.busy = busy

    @classmethod
    def of(cls, error: grpc.aio.AioRpcError, address: str) -> ServiceCallFailed:
        return cls(address, error.code(), error.details(), is_store_outage(error), is_busy(error))

    @property
    def retryable(self) -> bool:
        """A failure another try may not have: the service is away, slow or busy."""
        return self.busy or self.code in RETRYABLE_CODES

    @property
    def status(self) -> str:
        return f"{self.code.name}: {self.details}"


#: One try of a call: `(attempt number, address of the last failure)` -> the answer, or ServiceCallFailed.
Attempt = Callable[[int, str], Awaitable[Any]]


class ServiceCalls:
    """The coordinator's calls to its services, made for a run: its events tell every retry."""

    def __init__(
        self,
        clients: ServiceClients,
        settings: CoordinatorSettings,
        outage: OutagePolicy,
        events: EventLog,
    ) -> None:
        self.clients = clients
        self.settings = settings
        self.outage = outage
        self.events = events
        #: The self-edit formats the generator knew at the last check (empty before the first).
        self.known_formats: list[str] = []
        #: Service retries each executing run has spent (run id -> retries; reset when it starts executing).
        self._retries_spent: dict[str, int] = {}
        self.stats = CallStats()  # for /metrics

    def _spend_retry(self, run: RunState, service: str, failed: ServiceCallFailed) -> None:
        """Count a retry against the run's budget; RunInterrupted once it is spent."""
        spent = self._retries_spent.get(run.id, 0) + 1
        self._retries_spent[run.id] = spent
        budget = self.settings.max_retries_per_run
        if spent > budget:
            raise RunInterrupted(
                f"the run spent its retry budget ({budget} retries, SEAL_COORDINATOR_MAX_RETRIES_PER_RUN); "
                f"last failure: {service}: {failed.status}"
            )

    @counted_call
    async def call(self, run: RunState, service: str, what: str, attempt_fn: Attempt) -> Any:
        """Call a service, retrying while it is unreachable. `attempt_fn(attempt, last_failed_address)`
        raises ServiceCallFailed.

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
                run.unpause()
                return result
            except ServiceCallFailed as exc:
                failed, last_address = exc, exc.address
            if not failed.retryable:
                raise JobFailed(f"{service} refused {what}: {failed.status}") from None
            where = f" at {failed.address}" if failed.address else ""
            if failed.store_outage:
                attempt -= 1  # the store's outage, not the service's
                outage_started = outage_started or time.monotonic()
                if time.monotonic() - outage_started > self.settings.store_outage_max_seconds:
                    raise RunInterrupted(f"the store stayed unavailable for {what}: {failed.details}")
                delay = next(store_delays)
                run.pause(f"paused: {service}{where} cannot reach the store; retry in {delay:.0f}s")
                waits += 1
                self.events.emit(
                    run,
                    "retry",
                    f"{service}{where} cannot reach the store during {what} ({failed.details}); "
                    f"waiting {delay:.0f}s",
                    data={
                        "service": "store",
                        "via": service,
                        "address": failed.address,
                        "code": failed.code.name,
                    },
                    persist=sparse(waits),
                )
                await asyncio.sleep(delay)
                continue
            outage_started, store_delays = None, self.outage.delays()
            if failed.busy:  # alive, its queue full: waited out, without using attempts or the retry budget
                attempt -= 1
                waits += 1
                delay = random.uniform(
                    self.settings.initial_backoff_seconds, self.settings.max_backoff_seconds
                )
                self.events.emit(
                    run,
                    "retry",
                    f"{service}{where} is busy during {what} ({failed.status}); waiting {delay:.0f}s",
                    data={"service": service, "address": failed.address, "code": failed.code.name},
                    persist=sparse(waits),
                )
                await asyncio.sleep(delay)
                continue
            waits = 0
            if attempt >= self.settings.max_attempts:
                raise RunInterrupted(
                    f"{service} unavailable for {what} after {attempt} attempts: {failed.status}"
                ) from None
            self._spend_retry(run, service, failed)
            # Full jitter: calls that failed together (a service restarting) come back spread out.
            delay = random.uniform(
                0,
                min(
                    self.settings.max_backoff_seconds,
                    self.settings.initial_backoff_seconds * 2 ** (attempt - 1),
                ),
            )
            self.events.emit(
                run,
                "retry",
                f"{service}{where} failed during {what} ({failed.status}); "
                f"retry {attempt}/{self.settings.max_attempts - 1} in {delay:.0f}s",
                data={"service": service, "address": failed.address, "code": failed.code.name},
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
        """One unary call to the generator or the evaluator, retried by `call`; `slot` queues model work."""
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
                    raise ServiceCallFailed.of(exc, address[service]) from None

        return await self.call(run, service, what, attempt)

    async def check(self, run: RunState) -> DirectiveLimits:
        """All services must serve the same base model; the trainer's limits bound every directive.

        Fills `run.services`; returns the first trainer's directive limits.
        """
        request = common_pb2.GetInfoRequest()
        timeout = self.settings.info_timeout_seconds
        run.current = "checking services"
        self._retries_spent[run.id] = 0  # each execution (a start, a resume) has the whole budget

        async def info(stub: Any, address: str) -> common_pb2.ServiceInfo:
            try:
                return await stub.GetInfo(request, timeout=timeout)
            except grpc.aio.AioRpcError as exc:
                raise ServiceCallFailed.of(exc, address) from None

        settings = self.settings
        generator = await self.call(
            run, "generator", "GetInfo", lambda *_: info(self.clients.generator, settings.generator_address)
        )
        evaluator = await self.call(
            run, "evaluator", "GetInfo", lambda *_: info(self.clients.evaluator, settings.evaluator_address)
        )
        found = self.clients.trainers.present
        endpoints = await self.call(run, "trainer", "discovery", lambda *_: found(self._waiting(run)))
        trainers = []
        for endpoint in endpoints:
            trainers.append(
                await self.call(run, "trainer", "GetInfo", lambda *_, e=endpoint: info(e.stub, e.address))
            )
        self.known_formats = list(generator.formats)
        run.services = RunServices(
            generator=convert.service_record(generator, settings.generator_address),
            evaluator=convert.service_record(evaluator, settings.evaluator_address),
            trainers=[convert.trainer_record(t, e.address) for t, e in zip(trainers, endpoints, strict=True)],
        )
        check_services(
            run.config,
            generator,
            evaluator,
            settings.evaluator_address,
            [(t, e.address) for t, e in zip(trainers, endpoints, strict=True)],
        )
        # A trainer that groups concurrent Train calls gets that many at once; asked again at every run's
        # start (and resume), so a trainer restarted with another group size is taken as it is now.
        for trainer, endpoint in zip(trainers, endpoints, strict=True):
            self.clients.trainers.set_capacity(endpoint.address, trainer.max_group_size)
        return convert.directive_limits(trainers[0].limits)

    @staticmethod
    def _waiting(run: RunState) -> Callable[[str], None]:
        """For the trainer pool: no trainer is found (`why`); the run's `current` line says it waits."""

        def tell(why: str) -> None:
            run.current = f"waiting for a trainer: {why}"
            run.notify()

        return tell

    async def generate(
        self,
        run: RunState,
        passage: Passage,
        edit_format: str,
        sampling_seed: int,
        limits: DirectiveLimits,
        policy_key: str,
        num_samples: int,
    ) -> SelfEditsRecord:
        request = convert.generate_request(
            run.id, run.config, passage, edit_format, sampling_seed, limits, policy_key, num_samples
        )
        response = await self._unary(
            run,
            "generator",
            self.clients.generator.Generate,
            request,
            f"self-edits for {passage.passage_id}",
            slot=self.clients.generator_slot,
        )
        return convert.self_edits_record(response, policy_adapter_key=policy_key)

    async def import_(
        self,
        run: RunState,
        passage: Passage,
        edit_format: str,
        outputs: list[str],
        source: str,
        limits: DirectiveLimits,
    ) -> SelfEditsRecord:
        """Store self-edits written elsewhere (or, with [""], the passage alone) as training datasets."""
        request = convert.import_request(run.id, run.config, passage, edit_format, outputs, source, limits)
        # Import only writes to the store: it does not wait for the generator's model slot.
        response = await self._unary(
            run,
            "generator",
            self.clients.generator.Import,
            request,
            f"importing {source} for {passage.passage_id}",
        )
        return convert.self_edits_record(response, source=source)

    async def train(
        self,
        run: RunState,
        passage: Passage | None,
        dataset_key: str,
        directive: Directive,
        label: str,
        seed_offset: int = 0,
        init_adapter_key: str = "",
        merge_init: bool = False,
        stage: str = "",
    ) -> TrainRecord:
        """Train one adapter (a passage's, or the policy's when `passage` is None) on a stored dataset; from
        `init_adapter_key` (a continual stream's current model, carried on or merged) when given. `stage`:
        where in the run its progress line says it is (EventLog.train_progress; the round when not given).

        A retry goes to another trainer than the one that failed, waiting for its slot (see TrainerPool).
        """
        where = passage.passage_id if passage else "policy"
        request = convert.train_request(
            dataset_key,
            directive,
            run.config.seed + seed_offset,
            f"{run.id}/{where}/{label}",
            init_adapter_key,
            merge_init,
        )

        async def attempt(_: int, avoid: str) -> TrainRecord:
            waits = 0
            async with self.clients.trainers.acquire(avoid, self._waiting(run)) as trainer:
                try:
                    async for event in trainer.stub.Train(
                        request, timeout=self.settings.train_timeout_seconds
                    ):
                        if event.HasField("progress"):
                            waits += bool(event.progress.waiting_for)
                            self.events.train_progress(
                                run, f"{where} {label}", trainer.address, event.progress, waits, stage
                            )
                        else:
                            self.clients.trainers.observed(trainer, None)
                            return convert.train_record(event.result, directive, trainer.address)
                except grpc.aio.AioRpcError as exc:
                    self.clients.trainers.observed(trainer, exc)
                    raise ServiceCallFailed.of(exc, trainer.address) from None
            raise JobFailed(f"trainer at {trainer.address} ended the stream without a result")

        return await self.call(run, "trainer", f"training {dataset_key}", attempt)

    async def evaluate(
        self,
        run: RunState,
        passage: Passage,
        adapter_keys: list[str],
        questions: list[Question] | None = None,
    ) -> EvaluationRecord:
        """Evaluate adapters on the passage's questions (or on `questions`, e.g. the retention set).

        More adapters than one Evaluate call may carry (`evaluate_max_adapters_per_call`, the evaluator's
        limit) are evaluated in several calls, one after another, and their records merged (the evaluator
        keeps each adapter's evaluation as a record of its own either way).
        """
        size = self.settings.evaluate_max_adapters_per_call
        adapters = [key for key in adapter_keys if key]
        if len(adapters) <= size:
            return await self._evaluate(run, passage, adapter_keys, questions, "")
        parts = [adapters[i : i + size] for i in range(0, len(adapters), size)]
        if len(adapters) < len(adapter_keys):  # the base model ("") rides with the first part
            parts[0] = ["", *parts[0]]
        seconds, evaluations = 0.0, {}
        for number, part in enumerate(parts, start=1):
            record = await self._evaluate(run, passage, part, questions, f" (part {number}/{len(parts)})")
            seconds += record.seconds
            evaluations.update(record.evaluations)
        # In the order asked for, as one call answers.
        ordered = {k: evaluations[k] for k in dict.fromkeys(adapter_keys) if k in evaluations}
        return EvaluationRecord(seconds=seconds, evaluations=ordered)

    async def _evaluate(
        self,
        run: RunState,
        passage: Passage,
        adapter_keys: list[str],
        questions: list[Question] | None,
        part: str,
    ) -> EvaluationRecord:
        request = convert.evaluate_request(run.id, run.config, passage, adapter_keys, questions)
        what = "baseline" if adapter_keys == [""] else f"{len(adapter_keys)} adapters"
        if questions is not None:
            what += " on the retention set"
        response = await self._unary(
            run,
            "evaluator",
            self.clients.evaluator.Evaluate,
            request,
            f"{what}{part} for {passage.passage_id}",
            slot=self.clients.evaluator_slot,
        )
        return convert.evaluation_record(response)
