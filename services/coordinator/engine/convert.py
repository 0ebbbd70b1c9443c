"""Protobuf messages to and from the services, built from and turned into the job records of a run."""

from __future__ import annotations

from typing import Any

from seal.v1 import common_pb2, evaluator_pb2, generator_pb2, trainer_pb2
from seal_lab.data import Passage, Question
from seal_lab.directive import Directive, directive_source_name

from ..run.schemas import RunConfig


def _passage(passage: Passage) -> generator_pb2.Passage:
    return generator_pb2.Passage(passage_id=passage.passage_id, title=passage.title, context=passage.context)


def generate_request(
    run_id: str,
    config: RunConfig,
    passage: Passage,
    edit_format: str,
    sampling_seed: int,
    limits: common_pb2.DirectiveLimits,
    policy_key: str,
    num_samples: int,
) -> generator_pb2.GenerateRequest:
    return generator_pb2.GenerateRequest(
        passage=_passage(passage),
        format=edit_format,
        num_samples=num_samples,
        sampling=generator_pb2.SamplingParams(
            temperature=config.temperature,
            top_p=config.top_p,
            max_new_tokens=config.max_new_tokens,
            seed=sampling_seed,
        ),
        policy_adapter_key=policy_key,
        limits=limits,
        include_passage=config.include_passage,
        run_id=run_id,
        strategy=config.strategy_text(edit_format),
    )


def import_request(
    run_id: str,
    config: RunConfig,
    passage: Passage,
    edit_format: str,
    outputs: list[str],
    source: str,
    limits: common_pb2.DirectiveLimits,
) -> generator_pb2.ImportRequest:
    return generator_pb2.ImportRequest(
        passage=_passage(passage),
        format=edit_format,
        outputs=outputs,
        limits=limits,
        include_passage=config.include_passage or outputs == [""],
        source=source,
        run_id=run_id,
        strategy=config.strategy_text(edit_format),
    )


def self_edits_record(
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


def train_request(
    dataset_key: str, directive: dict[str, Any], seed: int, job_id: str
) -> trainer_pb2.TrainRequest:
    return trainer_pb2.TrainRequest(
        dataset_key=dataset_key, directive=common_pb2.Directive(**directive), seed=seed, job_id=job_id
    )


def train_record(result: trainer_pb2.TrainResult, directive: dict[str, Any], address: str) -> dict[str, Any]:
    metrics = result.metrics
    return {
        "adapter_key": result.adapter_key,
        "directive": directive,
        "reused": result.reused,
        "trainer": address,
        "metrics": {
            "steps": metrics.steps,
            "tokens": metrics.tokens,
            "seconds": metrics.seconds,
            "tokens_per_second": metrics.tokens_per_second,
            "final_loss": metrics.step_loss[-1] if metrics.step_loss else None,
            "first_loss": metrics.step_loss[0] if metrics.step_loss else None,
            "group_size": metrics.group_size or 1,
        },
    }


def evaluate_request(
    run_id: str,
    config: RunConfig,
    passage: Passage,
    adapter_keys: list[str],
    questions: list[Question] | None,
) -> evaluator_pb2.EvaluateRequest:
    # A passage's questions name its topic (SEAL's "Topic: {title}"); general questions have none.
    topic = "" if questions is not None else passage.title
    return evaluator_pb2.EvaluateRequest(
        questions=[
            evaluator_pb2.Question(
                question_id=q.question_id, question=q.question, answers=list(q.answers), topic=topic
            )
            for q in (questions or passage.questions)
        ],
        adapter_keys=adapter_keys,
        max_new_tokens=config.eval_max_new_tokens,
        run_id=run_id,
    )


def evaluation_record(response: evaluator_pb2.EvaluateResponse) -> dict[str, Any]:
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


def _scores(message: evaluator_pb2.Scores) -> dict[str, float]:
    scores = {
        "exact_match": message.exact_match,
        "f1": message.f1,
        "contains": message.contains,
        "token_recall": message.token_recall,
    }
    if message.HasField("judge"):  # SEAL's judge, only from an evaluator that has one: absent, not 0
        scores["judge"] = message.judge
    return scores


def info_dict(info: common_pb2.ServiceInfo, address: str) -> dict[str, Any]:
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
