"""Evaluator servicer: answers question sets under several adapters (and none), all in one batched generate,
and scores them.

A call's work lasts as long as its call: when the call ends first (the caller cancelled, its deadline passed,
the connection dropped), answering stops after the decoding step or forward under way, the model worker takes
the next call, and nothing is cached. Calls are not shared (an identical later call finds the cache, it
does not join a running one), so each one's end stops only its own work."""

from __future__ import annotations

import asyncio
import functools
import logging
import tempfile
import time
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import grpc

from seal.v1 import common_pb2, evaluator_pb2, evaluator_pb2_grpc
from seal_lab.errors import AlreadyExists, CallCancelled, FailedPrecondition, InvalidArgument
from seal_lab.formats.adapters import base_model_ref, fetch_adapter, verify_adapter
from seal_lab.formats.bounds import MAX_ID_CHARS, check_length
from seal_lab.formats.passages import (
    MAX_ANSWER_CHARS,
    MAX_ANSWERS_PER_QUESTION,
    MAX_QUESTION_CHARS,
    MAX_TITLE_CHARS,
)
from seal_lab.logging import bind_context
from seal_lab.model.callend import IsCancelled, call_end, check_cancelled
from seal_lab.model.multilora import AdapterWeights, load_peft_folder, lora_targets
from seal_lab.scoring.textmetrics import Scores
from seal_lab.serve.callgate import CallGate
from seal_lab.serve.host import ModelHost
from seal_lab.store import ObjectStore, json_bytes, read_record, sha256_hex, validate_key
from seal_lab.store.outage import OutagePolicy, call_async, call_sync, wait_for_store

from .answering import AnswerTask, QuestionItem, answer_tasks, question_set_hash
from .judge import Judge, add_verdicts
from .settings import EvaluatorSettings

log = logging.getLogger(__name__)

CACHE_PREFIX = "evaluations"
BASELINE = ""
SCORE_FIELDS = tuple(f.name for f in fields(Scores))
#: (set index, position in the set, cache key, record): an evaluation answered now, not yet cached.
Fresh = tuple[int, int, str, dict[str, Any]]


def evaluation_cache_key(fingerprint: str, adapter_key: str, question_hash: str) -> str:
    """Where the evaluation of `adapter_key` (BASELINE: the base model) on a question set is cached.

    The name hashes the exact adapter key and the question set's hash as canonical JSON, so two keys never
    share a file (a name made by replacing '/' with '-' gave `adapters/x` and `adapters-x` one file, and the
    adapter key `baseline` the base model's). Entries of that earlier scheme were
    `<fingerprint>/<questions>/<name>.json`; these are one level shallower, so none of them is ever read under
    the new meaning: they are only recomputed."""
    identity = json_bytes(
        {"adapter": None if adapter_key == BASELINE else adapter_key, "questions": question_hash}
    )
    return f"{CACHE_PREFIX}/{fingerprint}/{sha256_hex(identity)}.json"


def _to_proto(key: str, record: dict[str, Any], cached: bool) -> evaluator_pb2.AdapterEvaluation:
    return evaluator_pb2.AdapterEvaluation(
        adapter_key=key,
        mean=evaluator_pb2.Scores(**record["mean"]),
        answers=[
            evaluator_pb2.Answer(
                question_id=a["question_id"],
                answer=a["answer"],
                scores=evaluator_pb2.Scores(**a["scores"]),
                gold_logprob=a["gold_logprob"],
            )
            for a in record["answers"]
        ],
        cached=cached,
        mean_gold_logprob=record["mean_gold_logprob"],
    )


@dataclass
class _Set:
    """One question set of a request (`set_id` None: the request's own `questions`/`adapter_keys`)."""

    set_id: str | None
    questions: list[QuestionItem]
    keys: list[str]


class EvaluatorServicer(evaluator_pb2_grpc.EvaluatorServicer):
    def __init__(self, store: ObjectStore, host: ModelHost, settings: EvaluatorSettings) -> None:
        self.store = store
        self.host = host
        self.settings = settings
        self.outage = OutagePolicy(max_seconds=settings.store_outage_seconds)
        self.judge = Judge.from_settings(settings)  # None: SEAL's judge is off
        self.call_gate = CallGate(settings.max_queued_calls, "evaluations", "SEAL_EVALUATOR_MAX_QUEUED_CALLS")
        #: Calls whose answering stopped part-way because the call had ended (written on the worker thread only).
        self.calls_stopped = 0

    async def load(self) -> None:
        await asyncio.gather(self.host.load(), wait_for_store(self.store.check, "evaluator"))

    async def GetInfo(self, request: common_pb2.GetInfoRequest, context: grpc.aio.ServicerContext):
        info = self.host.info()
        # Whether answers get SEAL's judge's verdicts, and from which model (never the endpoint or its key).
        info.runtime["judge"] = "off" if self.judge is None else "on"
        if self.judge is not None:
            info.runtime["judge_model"] = self.judge.model
        return info

    def _questions(self, items: Any, where: str) -> list[QuestionItem]:
        questions = []
        for index, q in enumerate(items):
            check_length(q.question_id, MAX_ID_CHARS, f"{where}question {index}: question_id")
            check_length(q.topic, MAX_TITLE_CHARS, f"{where}question {index}: topic")
            if len(q.answers) > MAX_ANSWERS_PER_QUESTION:
                raise InvalidArgument(
                    f"{where}question {index} has {len(q.answers)} answers; the limit is {MAX_ANSWERS_PER_QUESTION}"
                )
            for answer in q.answers:
                check_length(answer, MAX_ANSWER_CHARS, f"{where}question {index}: an answer")
            if not q.question.strip():
                raise InvalidArgument(f"{where}question {index} has no text")
            if len(q.question) > MAX_QUESTION_CHARS:
                raise InvalidArgument(
                    f"{where}question {index} is longer than {MAX_QUESTION_CHARS} characters"
                )
            if not [a for a in q.answers if a.strip()]:
                raise InvalidArgument(
                    f"{where}question {index} ({q.question_id or 'no id'}) has no gold answer"
                )
            questions.append(
                QuestionItem(q.question_id or f"q{index}", q.question, tuple(q.answers), topic=q.topic)
            )
        return questions

    def _validate(self, request: evaluator_pb2.EvaluateRequest) -> tuple[list[_Set], int]:
        sent = len(request.questions) + sum(len(s.questions) for s in request.sets)
        if sent > self.settings.max_questions:  # counted before any question is looked at
            raise InvalidArgument(f"{sent} questions; the limit is {self.settings.max_questions}")
        sets = []
        if request.questions or not request.sets:
            if not request.questions:
                raise InvalidArgument("questions is empty")
            sets.append(
                _Set(None, self._questions(request.questions, ""), list(dict.fromkeys(request.adapter_keys)))
            )
        elif request.adapter_keys:
            raise InvalidArgument("adapter_keys without questions; put them in the sets")
        seen_ids = set()
        check_length(request.run_id, MAX_ID_CHARS, "run_id")
        for index, question_set in enumerate(request.sets):
            check_length(question_set.set_id, MAX_ID_CHARS, f"set {index}: set_id")
            where = f"set {index} ({question_set.set_id or 'no id'}): "
            if question_set.set_id in seen_ids:
                raise InvalidArgument(f"{where}set_id is used twice")
            seen_ids.add(question_set.set_id)
            if not question_set.questions:
                raise InvalidArgument(f"{where}questions is empty")
            keys = list(dict.fromkeys(question_set.adapter_keys))
            sets.append(_Set(question_set.set_id, self._questions(question_set.questions, where), keys))
        total_questions = sum(len(s.questions) for s in sets)
        if total_questions > self.settings.max_questions:
            raise InvalidArgument(f"{total_questions} questions; the limit is {self.settings.max_questions}")
        for question_set in sets:
            question_set.keys = question_set.keys or [BASELINE]
            for key in question_set.keys:
                if key != BASELINE:
                    validate_key(key)
        adapters = {key for s in sets for key in s.keys if key != BASELINE}
        if len(adapters) > self.settings.max_adapters_per_request:
            raise InvalidArgument(
                f"{len(adapters)} adapters; the limit is {self.settings.max_adapters_per_request}"
            )
        max_new_tokens = request.max_new_tokens or self.settings.max_new_tokens
        if not 1 <= max_new_tokens <= 512:
            raise InvalidArgument(f"max_new_tokens={max_new_tokens} must be in [1, 512]")
        return sets, max_new_tokens

    async def Evaluate(self, request: evaluator_pb2.EvaluateRequest, context: grpc.aio.ServicerContext):
        sets, max_new_tokens = self._validate(request)
        async with self.call_gate.admit(context):
            with call_end(context) as ended:
                return await self._evaluate(request, sets, max_new_tokens, ended.is_set)

    async def _evaluate(
        self,
        request: evaluator_pb2.EvaluateRequest,
        sets: list[_Set],
        max_new_tokens: int,
        cancelled: IsCancelled,
    ) -> evaluator_pb2.EvaluateResponse:
        loaded = self.host.loaded
        base_id = self._base_id()
        # Refuse unknown or foreign adapters before spending any compute on the others (off the event loop),
        # and before the cache is read: an evaluation cached before a check existed is not served either.
        for key in dict.fromkeys(key for s in sets for key in s.keys):
            if key != BASELINE:
                await call_async(
                    lambda k=key: verify_adapter(self.store, k, loaded.fingerprint, base_id=base_id),
                    self.outage,
                    "checking an adapter",
                )
        with bind_context(run_id=request.run_id):
            started = time.perf_counter()
            results, unjudged = await self.host.worker.run(
                self._evaluate_all, sets, max_new_tokens, cancelled
            )
            if unjudged:  # the judge is an HTTP endpoint: asked off the model worker, which stays free
                await asyncio.to_thread(self._judge_and_save, sets, results, unjudged, cancelled)
            seconds = time.perf_counter() - started
            pairs = sum(len(s.keys) for s in sets)
            log.info("evaluated %d (adapter, question set) pairs in %.1fs", pairs, seconds)
        response = evaluator_pb2.EvaluateResponse(model_fingerprint=loaded.fingerprint, seconds=seconds)
        for question_set, records in zip(sets, results, strict=True):
            evaluations = [
                _to_proto(key, record, cached)
                for key, (record, cached) in zip(question_set.keys, records, strict=True)
            ]
            if question_set.set_id is None:
                response.evaluations.extend(evaluations)
            else:
                response.sets.append(
                    evaluator_pb2.QuestionSetEvaluation(set_id=question_set.set_id, evaluations=evaluations)
                )
        return response

    def _evaluate_all(
        self, sets: list[_Set], max_new_tokens: int, cancelled: IsCancelled
    ) -> tuple[list[list[tuple[dict[str, Any], bool]]], list[Fresh]]:
        try:
            return self._answer_and_save(sets, max_new_tokens, cancelled)
        except CallCancelled as stopped:
            self.calls_stopped += 1
            log.info("%s; nothing cached", stopped.message)
            raise

    def _answer_and_save(
        self, sets: list[_Set], max_new_tokens: int, cancelled: IsCancelled
    ) -> tuple[list[list[tuple[dict[str, Any], bool]]], list[Fresh]]:
        """Blocking, on the model worker. Adapters are content-addressed, so their results are cached too;
        everything not cached is answered in one batched generate (every adapter and the base model).

        Without a judge the new evaluations are cached here, so a request queued behind this one finds them.
        With one, they come back unjudged (the second value) for `_judge_and_save`; their slots in the
        results are filled there."""
        results: list[list[Any]] = [[None] * len(s.keys) for s in sets]
        missing: list[tuple[int, int, str]] = []  # (set, position, cache key)
        judge = None if self.judge is None else self.judge.identity
        for set_index, question_set in enumerate(sets):
            question_hash = question_set_hash(question_set.questions, max_new_tokens, judge)
            for position, key in enumerate(question_set.keys):
                cache_key = evaluation_cache_key(self.host.loaded.fingerprint, key, question_hash)
                cached = call_sync(
                    lambda c=cache_key: self._cached(c), self.outage, "reading the evaluation cache"
                )
                if cached is not None:
                    results[set_index][position] = (cached, True)
                else:
                    missing.append((set_index, position, cache_key))
        if missing:
            needed = list(
                dict.fromkeys(sets[s].keys[p] for s, p, _ in missing if sets[s].keys[p] != BASELINE)
            )
            # Only fetching adapters touches the store, so a retry after an outage costs no answering.
            adapters = call_sync(lambda: self._fetch(needed), self.outage, "loading adapters")
            tasks = [AnswerTask(sets[s].questions, adapters.get(sets[s].keys[p])) for s, p, _ in missing]
            records = answer_tasks(
                self.host.loaded,
                tasks,
                self._targets(),
                max_new_tokens,
                self.settings.batch_size,
                cancelled=cancelled,
            )
            fresh = [(s, p, c, record) for (s, p, c), record in zip(missing, records, strict=True)]
            if self.judge is not None:
                return results, fresh
            self._save_all(results, fresh, cancelled)
        return results, []

    def _judge_and_save(
        self, sets: list[_Set], results: list[list[Any]], fresh: list[Fresh], cancelled: IsCancelled
    ) -> None:
        """Blocking: SEAL's judge's verdicts on the fresh evaluations, then cached. A judge that fails fails
        the request (its status says why); nothing unjudged is cached under a judged key."""
        add_verdicts(self.judge, [(sets[s].questions, record) for s, _, _, record in fresh])
        self._save_all(results, fresh, cancelled)

    def _save_all(self, results: list[list[Any]], fresh: list[Fresh], cancelled: IsCancelled) -> None:
        for s, p, cache_key, record in fresh:
            # A call that has ended caches nothing more: what it asked for goes to nobody.
            check_cancelled(cancelled, "before caching its evaluations")
            # The answers wait in memory while the store is away, instead of being computed again.
            saved = call_sync(
                lambda c=cache_key, r=record: self._save(c, r), self.outage, "caching an evaluation"
            )
            results[s][p] = (saved, False)

    def _base_id(self) -> str:
        """This evaluator's base model as adapters name it (`base_model_ref`: a loadable id, never a path)."""
        return base_model_ref(self.host.loaded.name).id

    def _targets(self) -> list[str]:
        return lora_targets(self.host.loaded.model, "all-linear")

    def _fetch(self, keys: list[str]) -> dict[str, AdapterWeights]:
        loaded = self.host.loaded
        adapters = {}
        for key in keys:
            with tempfile.TemporaryDirectory(prefix="seal-adapter-") as tmp:
                fetch_adapter(self.store, key, Path(tmp), loaded.fingerprint, base_id=self._base_id())
                try:
                    adapters[key] = load_peft_folder(Path(tmp), self._targets())
                except FailedPrecondition as exc:
                    raise FailedPrecondition(f"adapter {key!r}: {exc}") from None
        return adapters

    def _cached(self, cache_key: str) -> dict[str, Any] | None:
        """A cached evaluation if it is there and whole; an unreadable one is quarantined and redone."""
        read = read_record(
            self.store, cache_key, functools.partial(_record_problem, judged=self.judge is not None)
        )
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


def _record_problem(record: Any, judged: bool = False) -> str | None:
    """Why a cached evaluation cannot be used (None: it can); `judged`: it must carry the judge's verdicts."""
    names = (*SCORE_FIELDS, "judge") if judged else SCORE_FIELDS
    if not isinstance(record, dict) or not isinstance(record.get("answers"), list):
        return "not an evaluation record"
    mean = record.get("mean")
    if not isinstance(mean, dict) or any(m not in mean for m in names):
        return "no mean scores"
    if not isinstance(record.get("mean_gold_logprob"), float | int):
        return "no mean gold log-likelihood"
    for answer in record["answers"]:
        if not isinstance(answer, dict) or not isinstance(answer.get("gold_logprob"), float | int):
            return "an answer without its gold log-likelihood"
        if not isinstance(answer.get("scores"), dict) or any(m not in answer["scores"] for m in names):
            return "an answer without its scores"
    return None
