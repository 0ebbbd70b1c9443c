"""Generator servicer: K self-edits for a passage, stored as JSONL datasets.

A call's work lasts as long as its call: when the call ends first (the caller cancelled, its deadline passed,
the connection dropped), generation stops after the decoding step under way, the model worker takes the next
call, and nothing is stored. Calls are not shared, so each one's end stops only its own work."""

from __future__ import annotations

import asyncio
import logging
import math
import time
from typing import Any

import grpc

from seal.v1 import common_pb2, generator_pb2, generator_pb2_grpc
from seal_lab import __version__
from seal_lab.errors import CallCancelled, InvalidArgument
from seal_lab.formats.bounds import MAX_FORMAT_CHARS, MAX_ID_CHARS, MAX_LABEL_CHARS, check_length
from seal_lab.formats.directive import DIRECTIVE_CEILING, Directive, DirectiveLimits
from seal_lab.formats.passages import MAX_CONTEXT_CHARS, MAX_TITLE_CHARS, check_passage_id
from seal_lab.formats.strategies import MAX_STRATEGY_CHARS, Strategy, builtin_names, resolve
from seal_lab.logging import bind_context
from seal_lab.model.callend import IsCancelled, call_end, check_cancelled
from seal_lab.runtime import runtime_versions
from seal_lab.serve.callgate import CallGate
from seal_lab.serve.host import ModelHost
from seal_lab.settings import GrpcServiceSettings
from seal_lab.store import ObjectStore, validate_key
from seal_lab.store.outage import OutagePolicy, call_sync, wait_for_store

from .backends import Backend, LocalBackend, RawSelfEdit, Sampling
from .selfedit import store_self_edit
from .settings import GeneratorSettings
from .stages import StagedSelfEdit, run_stages, stage_sampling

log = logging.getLogger(__name__)

MAX_SAMPLES = 16
MAX_NEW_TOKENS = 2048

MAX_IMPORT_CHARS = 50_000
#: torch seeds are 64-bit; a sample's seed is this plus its index (and the directive pass adds one more).
MAX_SEED = 2**63 - 1


def validate_passage(passage: generator_pb2.Passage) -> None:
    if not passage.context.strip():
        raise InvalidArgument("passage.context is empty")
    if len(passage.context) > MAX_CONTEXT_CHARS:
        raise InvalidArgument(
            f"passage.context has {len(passage.context):,} characters; the limit is {MAX_CONTEXT_CHARS:,}"
        )
    if not passage.passage_id:
        raise InvalidArgument("passage.passage_id is empty")
    check_passage_id(passage.passage_id, "passage.passage_id")
    check_length(passage.title, MAX_TITLE_CHARS, "passage.title")


def validate_limits(message: common_pb2.DirectiveLimits) -> DirectiveLimits:
    """The trainer's limits as the caller passed them: every bound finite, low <= high, within the bounds no
    trainer may exceed (DIRECTIVE_CEILING: a `max_epochs 1e6` is refused, not recorded), and the default
    directive inside them (directives are clamped to them and they are shown to the model)."""
    limits = DirectiveLimits.from_proto(message)
    for name in Directive.__dataclass_fields__:
        low, high = limits.bounds(name)
        if not (math.isfinite(low) and math.isfinite(high) and 0 <= low <= high):
            raise InvalidArgument(f"limits: min_{name}={low:g} and max_{name}={high:g} are not a range")
    problems = limits.beyond(DIRECTIVE_CEILING)
    if problems:
        raise InvalidArgument(
            "limits: outside the generator's bounds (DIRECTIVE_CEILING; no trainer publishes more): "
            + "; ".join(problems)
        )
    problems = limits.violations(limits.default)
    if problems:
        raise InvalidArgument("limits: the default directive is outside them: " + "; ".join(problems))
    return limits


def _validate_common(format_name: str, strategy_text: str, run_id: str) -> Strategy:
    check_length(format_name, MAX_FORMAT_CHARS, "format")
    check_length(strategy_text, MAX_STRATEGY_CHARS, "strategy")
    check_length(run_id, MAX_ID_CHARS, "run_id")
    return resolve(format_name, strategy_text)


def validate_request(request: generator_pb2.GenerateRequest) -> Sampling:
    validate_passage(request.passage)
    _validate_common(request.format, request.strategy, request.run_id)
    if not 1 <= request.num_samples <= MAX_SAMPLES:
        raise InvalidArgument(f"num_samples={request.num_samples} must be in [1, {MAX_SAMPLES}]")
    sampling = request.sampling
    if not 0.0 <= sampling.temperature <= 2.0:
        raise InvalidArgument(f"sampling.temperature={sampling.temperature} must be in [0, 2]")
    if not 0.0 < sampling.top_p <= 1.0:
        raise InvalidArgument(f"sampling.top_p={sampling.top_p} must be in (0, 1]")
    if sampling.seed > MAX_SEED:
        raise InvalidArgument(f"sampling.seed={sampling.seed} must be at most {MAX_SEED} (2**63 - 1)")
    if not 1 <= sampling.max_new_tokens <= MAX_NEW_TOKENS:
        raise InvalidArgument(
            f"sampling.max_new_tokens={sampling.max_new_tokens} must be in [1, {MAX_NEW_TOKENS}]"
        )
    if not request.HasField("limits"):
        raise InvalidArgument("limits is required: pass the trainer's published DirectiveLimits")
    validate_limits(request.limits)
    if request.policy_adapter_key:
        validate_key(request.policy_adapter_key)
    return Sampling(sampling.temperature, sampling.top_p, sampling.max_new_tokens, sampling.seed)


def validate_import(request: generator_pb2.ImportRequest) -> None:
    validate_passage(request.passage)
    _validate_common(request.format, request.strategy, request.run_id)
    check_length(request.source, MAX_LABEL_CHARS, "source")
    if not 1 <= len(request.outputs) <= MAX_SAMPLES:
        raise InvalidArgument(f"{len(request.outputs)} outputs; give 1 to {MAX_SAMPLES}")
    for index, output in enumerate(request.outputs):
        if len(output) > MAX_IMPORT_CHARS:
            raise InvalidArgument(
                f"outputs[{index}] has {len(output):,} characters; the limit is {MAX_IMPORT_CHARS:,}"
            )
    if not request.HasField("limits"):
        raise InvalidArgument("limits is required: pass the trainer's published DirectiveLimits")
    validate_limits(request.limits)


#: How long a call waits for an absent store before failing UNAVAILABLE: the settings' default.
DEFAULT_OUTAGE = OutagePolicy(max_seconds=GrpcServiceSettings.model_fields["store_outage_seconds"].default)
DEFAULT_MAX_QUEUED_CALLS = GeneratorSettings.model_fields["max_queued_calls"].default


class GeneratorServicer(generator_pb2_grpc.GeneratorServicer):
    """Uses the local model (through `host`) unless a remote teacher backend is given."""

    def __init__(
        self,
        store: ObjectStore,
        host: ModelHost,
        remote: Backend | None = None,
        outage: OutagePolicy = DEFAULT_OUTAGE,
        max_queued_calls: int = DEFAULT_MAX_QUEUED_CALLS,
    ) -> None:
        self.store = store
        self.host = host
        self._remote = remote
        self._local: LocalBackend | None = None
        self.outage = outage
        # Generate and Import share one bound: both hold their request while they wait or work.
        self.call_gate = CallGate(max_queued_calls, "self-edit calls", "SEAL_GENERATOR_MAX_QUEUED_CALLS")
        #: Calls whose work stopped part-way because the call had ended (written on the worker thread only).
        self.calls_stopped = 0

    async def load(self) -> None:
        waits = [wait_for_store(self.store.check, "generator")]
        if self._remote is None:
            waits.append(self.host.load())
        await asyncio.gather(*waits)

    def _backend(self) -> Backend:
        if self._remote is not None:
            return self._remote
        if self._local is None:
            self._local = LocalBackend(self.host.loaded, self.store)
        return self._local

    def _fingerprint(self) -> str:
        return f"remote:{self._remote.model_name}" if self._remote else self.host.loaded.fingerprint

    async def GetInfo(self, request: common_pb2.GetInfoRequest, context: grpc.aio.ServicerContext):
        backend = self._backend()
        if self._remote is not None:
            return common_pb2.ServiceInfo(
                service="generator",
                version=__version__,
                model_name=backend.model_name,
                model_fingerprint=self._fingerprint(),
                formats=builtin_names(),
                backend=backend.name,
                runtime=runtime_versions(),
            )
        return self.host.info(formats=builtin_names(), backend=backend.name)

    async def Generate(self, request: generator_pb2.GenerateRequest, context: grpc.aio.ServicerContext):
        sampling = validate_request(request)
        backend = self._backend()
        fingerprint = self._fingerprint()
        with bind_context(run_id=request.run_id, passage_id=request.passage.passage_id):
            started = time.perf_counter()
            async with self.call_gate.admit(context):
                with call_end(context) as ended:
                    edits = await self.host.worker.run(
                        self._generate, backend, request, sampling, fingerprint, ended.is_set
                    )
            seconds = time.perf_counter() - started
            log.info("wrote %d %s self-edits in %.1fs", len(edits), request.format, seconds)
        return generator_pb2.GenerateResponse(
            self_edits=edits, model_fingerprint=fingerprint, seconds=seconds
        )

    def _generate(
        self,
        backend: Backend,
        request: generator_pb2.GenerateRequest,
        sampling: Sampling,
        fingerprint: str,
        cancelled: IsCancelled,
    ) -> list[generator_pb2.SelfEdit]:
        """Blocking, on the model worker."""
        try:
            return self._generate_and_store(backend, request, sampling, fingerprint, cancelled)
        except CallCancelled as stopped:
            self.calls_stopped += 1
            log.info("%s; nothing stored", stopped.message)
            raise

    def _generate_and_store(
        self,
        backend: Backend,
        request: generator_pb2.GenerateRequest,
        sampling: Sampling,
        fingerprint: str,
        cancelled: IsCancelled,
    ) -> list[generator_pb2.SelfEdit]:
        strategy = resolve(request.format, request.strategy)
        limits = DirectiveLimits.from_proto(request.limits)
        passage = request.passage
        # A policy adapter comes from the store, which may be away for a while (without one, nothing here
        # touches the store and this is a single call).
        staged = call_sync(
            lambda: run_stages(
                backend,
                strategy,
                passage.title,
                passage.context,
                request.num_samples,
                sampling,
                request.policy_adapter_key,
                limits,
                cancelled=cancelled,
            ),
            self.outage,
            "loading the policy adapter",
        )
        provenance: dict[str, Any] = {
            "backend": backend.name,
            "generator_model": backend.model_name,
            "generator_fingerprint": fingerprint,
            "policy_adapter_key": request.policy_adapter_key,
            "sampling": _sampling_record(stage_sampling(strategy, len(strategy.stages) - 1, sampling)),
        }
        if len(strategy.stages) > 1:
            provenance["stage_sampling"] = [
                _sampling_record(stage_sampling(strategy, i, sampling)) for i in range(len(strategy.stages))
            ]
        include_passage = _include_passage(strategy, request.include_passage)
        return self._store(staged, strategy, limits, passage, include_passage, provenance, cancelled)

    async def Import(self, request: generator_pb2.ImportRequest, context: grpc.aio.ServicerContext):
        validate_import(request)
        with bind_context(run_id=request.run_id, passage_id=request.passage.passage_id):
            started = time.perf_counter()
            async with self.call_gate.admit(context):
                with call_end(context) as ended:
                    edits = await asyncio.to_thread(self._import, request, ended.is_set)
            seconds = time.perf_counter() - started
            log.info("imported %d %s self-edits from %r", len(edits), request.format, request.source)
        return generator_pb2.ImportResponse(self_edits=edits, seconds=seconds)

    def _import(
        self, request: generator_pb2.ImportRequest, cancelled: IsCancelled
    ) -> list[generator_pb2.SelfEdit]:
        strategy = resolve(request.format, request.strategy)
        for index, output in enumerate(request.outputs):
            if not request.include_passage and not strategy.training_texts(output):
                raise InvalidArgument(
                    f"outputs[{index}] holds no {strategy.name} training text and include_passage is false"
                )
        passage = request.passage
        # The prompt recorded is the first stage's (the only one that needs no earlier output).
        prompt = strategy.render(0, passage.title, passage.context, {})
        staged = [StagedSelfEdit(RawSelfEdit(output, output, 0), prompt, ()) for output in request.outputs]
        provenance = {"backend": "import", "source": request.source}
        limits = DirectiveLimits.from_proto(request.limits)
        return self._store(staged, strategy, limits, passage, request.include_passage, provenance, cancelled)

    def _store(
        self,
        staged: list[StagedSelfEdit],
        strategy: Strategy,
        limits: DirectiveLimits,
        passage: generator_pb2.Passage,
        include_passage: bool,
        provenance: dict[str, Any],
        cancelled: IsCancelled,
    ) -> list[generator_pb2.SelfEdit]:
        messages = []
        for index, edit in enumerate(staged):
            # A call that has ended stores nothing more (what it asked for goes to nobody).
            check_cancelled(cancelled, f"before storing self-edit {index + 1} of {len(staged)}")
            # Written content-addressed (idempotent), waiting out a store outage with the texts in memory.
            stored = call_sync(
                lambda i=index, e=edit: store_self_edit(
                    self.store,
                    e.raw,
                    i,
                    strategy,
                    limits,
                    passage,
                    e.prompt,
                    include_passage,
                    provenance,
                    stages=e.stages,
                ),
                self.outage,
                "storing a self-edit",
            )
            messages.append(
                generator_pb2.SelfEdit(
                    dataset_key=stored.dataset_key,
                    format=strategy.name,
                    sample_index=index,
                    directive=stored.parsed.directive.to_proto(),
                    directive_source=stored.parsed.source.to_proto(),
                    directive_notes=list(stored.parsed.notes),
                    num_texts=len(stored.texts),
                    preview=edit.raw.text[:240],
                    generated_tokens=edit.raw.tokens,
                )
            )
        return messages


def _include_passage(strategy: Strategy, requested: bool) -> bool:
    """The strategy's own choice when it makes one, else the request's. (Imports keep the request's: the
    passage-only row is an import that must train on the passage whatever the strategy says.)"""
    return requested if strategy.include_passage is None else strategy.include_passage


def _sampling_record(sampling: Sampling) -> dict[str, float | int]:
    return {
        "temperature": sampling.temperature,
        "top_p": sampling.top_p,
        "max_new_tokens": sampling.max_new_tokens,
        "seed": sampling.seed,
    }
