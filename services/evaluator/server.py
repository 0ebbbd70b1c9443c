"""Evaluator servicer: answers a question set under several adapters (and none) and scores them."""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import Any

import grpc

from seal.v1 import common_pb2, evaluator_pb2, evaluator_pb2_grpc
from seal_lab.data import MAX_QUESTION_CHARS
from seal_lab.errors import InvalidArgument
from seal_lab.logging import bind_context
from seal_lab.lora import adapter_applied, verify_adapter
from seal_lab.service import ModelHost
from seal_lab.store import ObjectStore, validate_key

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

    async def load(self) -> None:
        await self.host.load()

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
        # Refuse unknown or foreign adapters before spending any compute on the others.
        for key in keys:
            if key != BASELINE:
                verify_adapter(self.store, key, loaded.fingerprint)
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
            if self.store.exists(cache_key):
                results.append((self.store.get_json(cache_key), True))
                continue
            if key == BASELINE:
                record = answer_questions(loaded, questions, max_new_tokens, self.settings.batch_size)
            else:
                with adapter_applied(loaded, self.store, key) as adapted:
                    with_adapter = dataclasses.replace(loaded, model=adapted)
                    record = answer_questions(
                        with_adapter, questions, max_new_tokens, self.settings.batch_size
                    )
            self.store.put_json(cache_key, record)
            results.append((record, False))
        return results
