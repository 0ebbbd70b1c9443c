"""Protobuf messages to and from the services, built from and turned into the job records of a run."""

from __future__ import annotations

from seal.v1 import common_pb2, evaluator_pb2, generator_pb2, trainer_pb2
from seal_lab.formats.directive import Directive, DirectiveLimits, directive_source_name
from seal_lab.formats.passages import Passage, Question

from ..run.records import (
    Answer,
    DirectiveRecord,
    Evaluation,
    EvaluationRecord,
    Scores,
    SelfEdit,
    SelfEditsRecord,
    ServiceRecord,
    TrainMetrics,
    TrainRecord,
)
from ..run.schemas import RunConfig


def _passage(passage: Passage) -> generator_pb2.Passage:
    return generator_pb2.Passage(passage_id=passage.passage_id, title=passage.title, context=passage.context)


def generate_request(
    run_id: str,
    config: RunConfig,
    passage: Passage,
    edit_format: str,
    sampling_seed: int,
    limits: DirectiveLimits,
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
        limits=limits.to_proto(),
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
    limits: DirectiveLimits,
) -> generator_pb2.ImportRequest:
    return generator_pb2.ImportRequest(
        passage=_passage(passage),
        format=edit_format,
        outputs=outputs,
        limits=limits.to_proto(),
        include_passage=config.include_passage or outputs == [""],
        source=source,
        run_id=run_id,
        strategy=config.strategy_text(edit_format),
    )


def self_edits_record(
    response: generator_pb2.GenerateResponse | generator_pb2.ImportResponse,
    policy_adapter_key: str | None = None,
    source: str | None = None,
) -> SelfEditsRecord:
    """The record of a Generate (with the policy that wrote them) or an Import (with where they came from)."""
    record = SelfEditsRecord(
        seconds=response.seconds,
        self_edits=[
            SelfEdit(
                dataset_key=e.dataset_key,
                format=e.format,
                sample_index=e.sample_index,
                # Every field, zeros included (steps = 0 means "epochs"; ListFields would drop it).
                directive=directive_record(Directive.from_proto(e.directive)),
                directive_source=directive_source_name(e.directive_source),
                directive_notes=list(e.directive_notes),
                num_texts=e.num_texts,
                preview=e.preview,
                generated_tokens=e.generated_tokens,
            )
            for e in response.self_edits
        ],
    )
    if policy_adapter_key is not None:
        record.policy_adapter_key = policy_adapter_key
    if source is not None:
        record.source = source
    return record


def directive_record(directive: Directive) -> DirectiveRecord:
    return DirectiveRecord(**directive.as_dict())


def directive_limits(message: common_pb2.DirectiveLimits) -> DirectiveLimits:
    """A trainer's published limits, in the one form the coordinator keeps them."""
    return DirectiveLimits.from_proto(message)


def train_request(
    dataset_key: str,
    directive: Directive,
    seed: int,
    job_id: str,
    init_adapter_key: str = "",
    merge_init: bool = False,
) -> trainer_pb2.TrainRequest:
    return trainer_pb2.TrainRequest(
        dataset_key=dataset_key,
        directive=directive.to_proto(),
        seed=seed,
        job_id=job_id,
        init_adapter_key=init_adapter_key,
        merge_init=merge_init,
    )


def train_record(result: trainer_pb2.TrainResult, directive: Directive, address: str) -> TrainRecord:
    metrics = result.metrics
    return TrainRecord(
        adapter_key=result.adapter_key,
        directive=directive_record(directive),
        reused=result.reused,
        trainer=address,
        metrics=TrainMetrics(
            steps=metrics.steps,
            tokens=metrics.tokens,
            seconds=metrics.seconds,
            tokens_per_second=metrics.tokens_per_second,
            final_loss=metrics.step_loss[-1] if metrics.step_loss else None,
            first_loss=metrics.step_loss[0] if metrics.step_loss else None,
            group_size=metrics.group_size or 1,
        ),
    )


def evaluate_request(
    run_id: str,
    config: RunConfig,
    passage: Passage,
    adapter_keys: list[str],
    questions: list[Question] | None,
) -> evaluator_pb2.EvaluateRequest:
    # A passage's questions name its topic (SEAL's "Topic: {title}") unless the run asks them without it;
    # general questions have none.
    topic = passage.title if questions is None and config.question_topic else ""
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


def evaluation_record(response: evaluator_pb2.EvaluateResponse) -> EvaluationRecord:
    return EvaluationRecord(
        seconds=response.seconds,
        evaluations={
            e.adapter_key: Evaluation(
                mean=_scores(e.mean, e.mean_gold_logprob),
                cached=e.cached,
                answers=[
                    Answer(
                        question_id=a.question_id, answer=a.answer, scores=_scores(a.scores, a.gold_logprob)
                    )
                    for a in e.answers
                ],
            )
            for e in response.evaluations
        },
    )


def _scores(message: evaluator_pb2.Scores, gold_logprob: float) -> Scores:
    scores = Scores(
        exact_match=message.exact_match,
        f1=message.f1,
        contains=message.contains,
        token_recall=message.token_recall,
    )
    if message.HasField("judge"):  # SEAL's judge, only from an evaluator that has one: absent, not 0
        scores.judge = message.judge
    scores.gold_logprob = round(gold_logprob, 5)
    return scores


def service_record(info: common_pb2.ServiceInfo, address: str) -> ServiceRecord:
    return ServiceRecord(
        address=address,
        service=info.service,
        version=info.version,
        model_name=info.model_name,
        model_fingerprint=info.model_fingerprint,
        device=info.device,
        dtype=info.dtype,
        backend=info.backend,
        runtime=dict(info.runtime),
    )


def trainer_record(info: common_pb2.ServiceInfo, address: str) -> ServiceRecord:
    record = service_record(info, address)
    record.max_group_size = max(1, info.max_group_size)
    return record
