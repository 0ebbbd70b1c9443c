"""Evaluator servicer: answers a question set under several adapters (and none) and scores them."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from typing import Any

import grpc

from seal.v1 import common_pb2, evaluator_pb2, evaluator_pb2_grpc
from seal_lab.data import MAX_QUESTION_CHARS
from seal_lab.errors import AlreadyExists, InvalidArgument
from seal_lab.logging import bind_context
from seal_lab.lora import adapter_applied, verify_adapter
from seal_lab.outage import OutagePolicy, call_async, call_sync, wait_for_store
from seal_lab.service import ModelHost
from seal_lab.store import ObjectStore, read_record, validate_key

from .answering import QuestionItem, answer_questions, question_set_hash
from .settings import EvaluatorSettings

log = logging.getLogger(__name__)

CACHE_PREFIX = "evaluations"
BASELINE = ""


def _to_proto(key: str, record: dict[str, Any], cached: bool) -> evaluator_pb2.AdapterEvaluation:
    return evaluator_pb2.AdapterEvaluation(
        adapter_key=key,
        mean=evaluator_pb2.Scores(**record["mean"]),
        answers=[
            evaluator_pb2.Answer(
                question_id=a["question_id"], answer=a["answer"], scores=evaluator_pb2.Scores(**a["scores"])
            )
            for a in record["answers"]
        ],
        cached=cached,
    )


class EvaluatorServicer(evaluator_pb2_grpc.EvaluatorServicer):
    def __init__(self, store: ObjectStore, host: ModelHost, settings: EvaluatorSettings) -> None:
        self.store = store
        self.host = host
        self.settings = settings
        self.outage = OutagePolicy(max_seconds=settings.store_outage_seconds)

    async def load(self) -> None:
        await asyncio.gather(self.host.load(), wait_for_store(self.store.check, "evaluator"))

    async def GetInfo(self, request: common_pb2.GetInfoRequest, context: grpc.aio.ServicerContext):
        return self.host.info()

    def _validate(self, request: evaluator_pb2.EvaluateRequest) -> tuple[list[QuestionItem], list[str], int]:
        if not request.questions:
            raise InvalidArgument("questions is empty")
        if len(request.questions) > self.settings.max_questions:
            raise InvalidArgument(
                f"{len(request.questions)} questions; the limit is {self.settings.max_questions}"
            )
        questions = []
        for index, q in enumerate(request.questions):
            if not q.question.strip():
                raise InvalidArgument(f"question {index} has no text")
            if len(q.question) > MAX_QUESTION_CHARS:
                raise InvalidArgument(f"question {index} is longer than {MAX_QUESTION_CHARS} characters")
            if not [a for a in q.answers if a.strip()]:
                raise InvalidArgument(f"question {index} ({q.question_id or 'no id'}) has no gold answer")
            questions.append(QuestionItem(q.question_id or f"q{index}", q.question, tuple(q.answers)))
        keys = list(dict.fromkeys(request.adapter_keys)) or [BASELINE]
        if len(keys) > self.settings.max_adapters_per_request:
            raise InvalidArgument(
                f"{len(keys)} adapters; the limit is {self.settings.max_adapters_per_request}"
            )
        for key in keys:
            if key != BASELINE:
                validate_key(key)
        max_new_tokens = request.max_new_tokens or self.settings.max_new_tokens
        if not 1 <= max_new_tokens <= 512:
            raise InvalidArgument(f"max_new_tokens={max_new_tokens} must be in [1, 512]")
        return questions, keys, max_new_tokens

    async def Evaluate(self, request: evaluator_pb2.EvaluateRequest, context: grpc.aio.ServicerContext):
        questions, keys, max_new_tokens = self._validate(request)
        loaded = self.host.loaded
        # Refuse unknown or foreign adapters before spending any compute on the others (off the event loop).
        for key in keys:
            if key != BASELINE:
                await call_async(
                    lambda k=key: verify_adapter(self.store, k, loaded.fingerprint),
                    self.outage,
                    "checking an adapter",
                )
        with bind_context(run_id=request.run_id):
            started = time.perf_counter()
            results = await self.host.worker.run(self._evaluate_all, questions, keys, max_new_tokens)
            seconds = time.perf_counter() - started
            log.info("evaluated %d adapters x %d questions in %.1fs", len(keys), len(questions), seconds)
        return evaluator_pb2.EvaluateResponse(
            evaluations=[
                _to_proto(key, record, cached) for key, (record, cached) in zip(keys, results, strict=True)
            ],
            model_fingerprint=loaded.fingerprint,
            seconds=seconds,
        )

    def _cache_key(self, adapter_key: str, question_hash: str) -> str:
        name = "baseline" if adapter_key == BASELINE else adapter_key.replace("/", "-")
        return f"{CACHE_PREFIX}/{self.host.loaded.fingerprint}/{question_hash}/{name}.json"

    def _evaluate_all(
        self, questions: list[QuestionItem], keys: list[str], max_new_tokens: int
    ) -> list[tuple[dict[str, Any], bool]]:
        """Blocking, on the model worker. Adapters are content-addressed, so their results are cached too."""
        loaded = self.host.loaded
        question_hash = question_set_hash(questions, max_new_tokens)
        results = []
        for key in keys:
            cache_key = self._cache_key(key, question_hash)
            cached = call_sync(
                lambda c=cache_key: self._cached(c), self.outage, "reading the evaluation cache"
            )
            if cached is not None:
                results.append((cached, True))
                continue
            if key == BASELINE:
                record = answer_questions(loaded, questions, max_new_tokens, self.settings.batch_size)
            else:
                # Only fetching the adapter touches the store, so a retry after an outage costs no answering.
                record = call_sync(
                    lambda k=key: self._answer_with(k, questions, max_new_tokens),
                    self.outage,
                    "loading an adapter",
                )
            # The answers wait in memory while the store is away, instead of being computed again.
            record = call_sync(
                lambda c=cache_key, r=record: self._save(c, r), self.outage, "caching an evaluation"
            )
            results.append((record, False))
        return results

    def _answer_with(self, key: str, questions: list[QuestionItem], max_new_tokens: int) -> dict[str, Any]:
        loaded = self.host.loaded
        with adapter_applied(loaded, self.store, key) as adapted:
            with_adapter = dataclasses.replace(loaded, model=adapted)
            return answer_questions(with_adapter, questions, max_new_tokens, self.settings.batch_size)

    def _cached(self, cache_key: str) -> dict[str, Any] | None:
        """A cached evaluation if it is there and whole; an unreadable one is quarantined and redone."""
        read = read_record(self.store, cache_key, _record_problem)
        if read.problem:
            log.warning(
                "cached evaluation %s unusable (%s): moved to %s; evaluating again",
                cache_key,
                read.problem,
                read.moved_to,
            )
        return read.record

    def _save(self, cache_key: str, record: dict[str, Any]) -> dict[str, Any]:
        """Write-once; if another evaluator cached this first, its record is the one (answers are greedy)."""
        try:
            self.store.put_json(cache_key, record)
        except AlreadyExists:
            return self.store.get_json(cache_key)
        return record


def _record_problem(record: Any) -> str | None:
    if not isinstance(record, dict) or not isinstance(record.get("answers"), list):
        return "not an evaluation record"
    mean = record.get("mean")
    if not isinstance(mean, dict) or any(m not in mean for m in ("exact_match", "f1", "contains")):
        return "no mean scores"
    return None
