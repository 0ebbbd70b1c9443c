"""Generator, trainer and evaluator as real gRPC servers: the happy path, health, and refusals."""

from __future__ import annotations

import json

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from seal.v1 import (
    common_pb2,
    evaluator_pb2,
    evaluator_pb2_grpc,
    generator_pb2,
    generator_pb2_grpc,
    trainer_pb2,
    trainer_pb2_grpc,
)
from seal_lab.formats.adapters import ADAPTER_CARD, ADAPTER_CONFIG, ADAPTER_META, ADAPTER_WEIGHTS
from seal_lab.formats.directive import Directive, DirectiveLimits
from seal_lab.formats.passages import demo_passages
from seal_lab.store.local import LocalStore

PASSAGE = demo_passages()[1]


def _passage(context: str = PASSAGE.context) -> generator_pb2.Passage:
    return generator_pb2.Passage(passage_id=PASSAGE.passage_id, title=PASSAGE.title, context=context)


def _questions() -> list[evaluator_pb2.Question]:
    return [
        evaluator_pb2.Question(question_id=q.question_id, question=q.question, answers=list(q.answers))
        for q in PASSAGE.questions
    ]


@pytest.fixture(scope="module")
def limits(trainer_server) -> common_pb2.DirectiveLimits:
    stub = trainer_pb2_grpc.TrainerStub(trainer_server.channel())
    return stub.GetInfo(common_pb2.GetInfoRequest(), timeout=10).limits


def _generate(generator_server, limits, **overrides) -> generator_pb2.GenerateResponse:
    request = generator_pb2.GenerateRequest(
        passage=_passage(),
        format="implications",
        num_samples=2,
        sampling=generator_pb2.SamplingParams(temperature=0.7, top_p=0.95, max_new_tokens=48, seed=7),
        limits=limits,
        include_passage=True,
    )
    for field, value in overrides.items():
        if field == "context":
            request.passage.context = value
        else:
            setattr(request, field, value)
    stub = generator_pb2_grpc.GeneratorStub(generator_server.channel())
    return stub.Generate(request, timeout=300)


def _train(
    trainer_server, dataset_key: str, directive: Directive, seed: int = 0
) -> list[trainer_pb2.TrainEvent]:
    stub = trainer_pb2_grpc.TrainerStub(trainer_server.channel())
    request = trainer_pb2.TrainRequest(dataset_key=dataset_key, directive=directive.to_proto(), seed=seed)
    return list(stub.Train(request, timeout=300))


SMALL = Directive(
    epochs=1, learning_rate=1e-3, lora_rank=4, lora_alpha=8, batch_size=4, max_length=64, steps=0
)


@pytest.fixture(scope="module")
def self_edits(generator_server, limits) -> generator_pb2.GenerateResponse:
    return _generate(generator_server, limits)


@pytest.fixture(scope="module")
def trained(trainer_server, self_edits) -> trainer_pb2.TrainResult:
    events = _train(trainer_server, self_edits.self_edits[0].dataset_key, SMALL)
    assert events[-1].HasField("result")
    return events[-1].result


# ---- health and identity ----------------------------------------------------------------------------------


def test_health_is_serving_and_services_share_the_base_model(
    generator_server, trainer_server, evaluator_server
):
    fingerprints = set()
    for server in (generator_server, trainer_server, evaluator_server):
        health = health_pb2_grpc.HealthStub(server.channel())
        assert (
            health.Check(health_pb2.HealthCheckRequest(), timeout=5).status
            == health_pb2.HealthCheckResponse.SERVING
        )
    for stub in (
        generator_pb2_grpc.GeneratorStub(generator_server.channel()),
        trainer_pb2_grpc.TrainerStub(trainer_server.channel()),
        evaluator_pb2_grpc.EvaluatorStub(evaluator_server.channel()),
    ):
        fingerprints.add(stub.GetInfo(common_pb2.GetInfoRequest(), timeout=5).model_fingerprint)
    assert len(fingerprints) == 1 and "" not in fingerprints


def test_health_is_not_serving_before_the_model_loads(shared_store, model_settings):
    from seal.v1 import trainer_pb2_grpc as tg
    from seal_lab.serve.host import ModelHost
    from services.trainer.server import TrainerServicer
    from tests.grpc_harness import serve
    from tests.service.conftest import TEST_TRAINER_SETTINGS

    servicer = TrainerServicer(shared_store, ModelHost("trainer", model_settings), TEST_TRAINER_SETTINGS)
    server = serve(servicer, "seal.v1.Trainer", tg.add_TrainerServicer_to_server, load=False)
    try:
        health = health_pb2_grpc.HealthStub(server.channel())
        status = health.Check(health_pb2.HealthCheckRequest(service="seal.v1.Trainer"), timeout=5).status
        assert status == health_pb2.HealthCheckResponse.NOT_SERVING
        with pytest.raises(grpc.RpcError) as error:
            tg.TrainerStub(server.channel()).GetInfo(common_pb2.GetInfoRequest(), timeout=5)
        assert error.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "loading" in error.value.details()
        server.finish_loading()
        status = health.Check(health_pb2.HealthCheckRequest(service="seal.v1.Trainer"), timeout=5).status
        assert status == health_pb2.HealthCheckResponse.SERVING
    finally:
        server.stop()


# ---- generator --------------------------------------------------------------------------------------------


def test_generator_stores_real_self_edits_with_valid_directives(self_edits, shared_store: LocalStore, limits):
    assert len(self_edits.self_edits) == 2
    for edit in self_edits.self_edits:
        lines = shared_store.get_bytes(edit.dataset_key).decode().splitlines()
        meta, *examples = [json.loads(line) for line in lines]
        assert meta["type"] == "meta" and meta["format"] == "implications"
        assert meta["raw_output"].strip(), "the model wrote nothing"
        assert "Passage:" in meta["prompt"] and PASSAGE.context in meta["prompt"]
        # include_passage: the passage is the first training example; the model's text follows.
        assert examples[0]["completion"].endswith(PASSAGE.context)
        assert len(examples) == 1 + edit.num_texts
        directive = Directive.from_proto(edit.directive)
        assert directive.epochs <= limits.max_epochs and directive.max_length <= limits.max_max_length
        assert edit.directive_source != generator_pb2.DIRECTIVE_SOURCE_UNSPECIFIED
    # The same bytes always get the same key: keys are content addresses.
    assert all(e.dataset_key.startswith("datasets/") for e in self_edits.self_edits)


def test_generator_is_deterministic_for_a_seed(generator_server, limits, self_edits):
    again = _generate(generator_server, limits)
    assert [e.dataset_key for e in again.self_edits] == [e.dataset_key for e in self_edits.self_edits]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"context": ""}, "passage.context is empty"),
        ({"context": "   \n"}, "passage.context is empty"),
        ({"context": "x" * 1_000_000}, "1,000,000 characters"),
        ({"format": "poetry"}, "unknown self-edit format"),
        ({"num_samples": 0}, "num_samples=0"),
        ({"num_samples": 1000}, "num_samples=1000"),
        ({"policy_adapter_key": "../etc/passwd"}, "invalid object key"),
    ],
)
def test_generator_refuses_bad_requests(generator_server, limits, overrides, message):
    with pytest.raises(grpc.RpcError) as error:
        _generate(generator_server, limits, **overrides)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert message in error.value.details()


def test_generator_requires_the_trainer_limits(generator_server):
    stub = generator_pb2_grpc.GeneratorStub(generator_server.channel())
    request = generator_pb2.GenerateRequest(
        passage=_passage(),
        format="implications",
        num_samples=1,
        sampling=generator_pb2.SamplingParams(temperature=0.7, top_p=0.9, max_new_tokens=16),
    )
    with pytest.raises(grpc.RpcError) as error:
        stub.Generate(request, timeout=30)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "limits" in error.value.details()


def test_generator_refuses_caller_limits_beyond_its_bounds(generator_server):
    """A caller's `max_epochs 1e6` is refused, not shown to the model and recorded (issue 34, item 4)."""
    huge = DirectiveLimits(max_epochs=1_000_000).to_proto()
    stub = generator_pb2_grpc.GeneratorStub(generator_server.channel())
    imported = generator_pb2.ImportRequest(
        passage=_passage(), format="implications", outputs=["The bell is red."], source="t", limits=huge
    )
    for call in (lambda: _generate(generator_server, huge), lambda: stub.Import(imported, timeout=30)):
        with pytest.raises(grpc.RpcError) as error:
            call()
        assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "max_epochs=1000000 is above 100" in error.value.details()


def test_generator_unknown_policy_adapter_is_not_found(generator_server, limits):
    with pytest.raises(grpc.RpcError) as error:
        _generate(generator_server, limits, policy_adapter_key="adapters/doesnotexist")
    assert error.value.code() == grpc.StatusCode.NOT_FOUND


def _import(
    generator_server, limits, outputs, include_passage=True, **overrides
) -> generator_pb2.ImportResponse:
    stub = generator_pb2_grpc.GeneratorStub(generator_server.channel())
    request = generator_pb2.ImportRequest(
        passage=_passage(overrides.pop("context", PASSAGE.context)),
        format=overrides.pop("format", "implications"),
        outputs=outputs,
        limits=limits,
        include_passage=include_passage,
        source="teacher:test",
    )
    return stub.Import(request, timeout=30)


def test_generator_imports_teacher_self_edits_as_datasets(generator_server, limits, shared_store: LocalStore):
    teacher = "**Implications:**\n1. The first implication is about the passage.\n2. A second one, also long enough."
    response = _import(generator_server, limits, [teacher, ""])
    imported, passage_only = response.self_edits
    records = [
        json.loads(line) for line in shared_store.get_bytes(imported.dataset_key).decode().splitlines()
    ]
    meta, examples = records[0], [r["completion"] for r in records[1:]]
    assert meta["backend"] == "import" and meta["source"] == "teacher:test" and meta["policy_examples"] == []
    # The passage, then one text per implication, each after the title (SEAL's format); the markdown
    # heading is not a training text.
    title = PASSAGE.title.strip()
    assert examples[1:] == [
        f"{title}\nThe first implication is about the passage.",
        f"{title}\nA second one, also long enough.",
    ]
    assert PASSAGE.context in examples[0]
    # No directive line in the teacher's text: the trainer's default, said so.
    assert imported.directive_source == generator_pb2.DIRECTIVE_SOURCE_DEFAULT
    only = [
        json.loads(line) for line in shared_store.get_bytes(passage_only.dataset_key).decode().splitlines()
    ]
    assert len(only) == 2 and PASSAGE.context in only[1]["completion"]


@pytest.mark.parametrize(
    ("outputs", "include_passage", "overrides", "message"),
    [
        ([], True, {}, "0 outputs"),
        ([""], False, {}, "holds no implications training text"),
        (["x" * 60_000], True, {}, "60,000 characters"),
        (["1. some text here"], True, {"format": "poetry"}, "unknown self-edit format"),
        (["1. some text here"], True, {"context": ""}, "passage.context is empty"),
    ],
)
def test_generator_refuses_bad_imports(
    generator_server, limits, outputs, include_passage, overrides, message
):
    with pytest.raises(grpc.RpcError) as error:
        _import(generator_server, limits, outputs, include_passage, **overrides)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert message in error.value.details()


# ---- trainer ----------------------------------------------------------------------------------------------


def test_trainer_streams_progress_and_stores_a_safetensors_adapter(trainer_server, self_edits, shared_store):
    events = _train(trainer_server, self_edits.self_edits[1].dataset_key, SMALL)
    progress = [e.progress for e in events if e.HasField("progress")]
    result = events[-1].result
    assert progress and progress[-1].step == progress[-1].total_steps == len(progress)
    assert not result.reused
    assert (
        result.metrics.tokens > 0
        and result.metrics.seconds > 0
        and len(result.metrics.step_loss) == len(progress)
    )
    keys = shared_store.list_keys(result.adapter_key + "/")
    assert sorted(k.rsplit("/", 1)[1] for k in keys) == sorted(
        [ADAPTER_WEIGHTS, ADAPTER_CONFIG, ADAPTER_CARD, ADAPTER_META]
    )
    meta = shared_store.get_json(f"{result.adapter_key}/{ADAPTER_META}")
    assert meta["dataset_key"] == self_edits.self_edits[1].dataset_key and meta["directive"]["epochs"] == 1
    # peft's config names the base model by its loadable id (the embedded model's upstream), not a cache path.
    config = shared_store.get_json(f"{result.adapter_key}/{ADAPTER_CONFIG}")
    assert config["base_model_name_or_path"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert meta["base_model"]["source"] == "embedded" and "Q4_1" in meta["base_model"]["weights"]


def test_trainer_reuses_a_finished_job_instead_of_training_again(trainer_server, self_edits, trained):
    events = _train(trainer_server, self_edits.self_edits[0].dataset_key, SMALL)
    assert len(events) == 1 and events[0].result.reused
    assert events[0].result.adapter_key == trained.adapter_key


def test_trainer_refuses_a_million_epochs(trainer_server, self_edits):
    with pytest.raises(grpc.RpcError) as error:
        _train(trainer_server, self_edits.self_edits[0].dataset_key, Directive(epochs=1_000_000))
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "epochs=1000000 is outside [1, 2]" in error.value.details()


def test_trainer_unknown_dataset_is_not_found(trainer_server):
    with pytest.raises(grpc.RpcError) as error:
        _train(trainer_server, "datasets/missing.jsonl", SMALL)
    assert error.value.code() == grpc.StatusCode.NOT_FOUND


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"this is not json\n", "line 1: not JSON"),
        (b'{"type": "meta"}\n', "no training examples"),
        (b"\xff\xfe", "not UTF-8"),
    ],
)
def test_trainer_refuses_bad_datasets(trainer_server, shared_store, content, message):
    key = shared_store.put_content("datasets", content, ".jsonl")
    with pytest.raises(grpc.RpcError) as error:
        _train(trainer_server, key, SMALL)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert message in error.value.details()


# ---- evaluator --------------------------------------------------------------------------------------------


def _evaluate(evaluator_server, keys: list[str]) -> evaluator_pb2.EvaluateResponse:
    stub = evaluator_pb2_grpc.EvaluatorStub(evaluator_server.channel())
    return stub.Evaluate(
        evaluator_pb2.EvaluateRequest(questions=_questions(), adapter_keys=keys), timeout=300
    )


def test_evaluator_scores_baseline_and_adapters_and_caches_the_baseline(evaluator_server, trained):
    response = _evaluate(evaluator_server, ["", trained.adapter_key])
    baseline, adapted = response.evaluations
    assert baseline.adapter_key == "" and adapted.adapter_key == trained.adapter_key
    for evaluation in (baseline, adapted):
        assert len(evaluation.answers) == len(PASSAGE.questions)
        assert any(a.answer.strip() for a in evaluation.answers), "the model answered nothing"
        assert 0.0 <= evaluation.mean.f1 <= 1.0
    again = _evaluate(evaluator_server, [""])
    assert again.evaluations[0].cached
    assert [a.answer for a in again.evaluations[0].answers] == [a.answer for a in baseline.answers]


def test_evaluator_answers_several_question_sets_in_one_request(evaluator_server, trained):
    """Two sets (the passage's questions, and two of them again under another id) in one batched request:
    each set comes back under its id, and what is answered equals what a single-set request answers."""
    stub = evaluator_pb2_grpc.EvaluatorStub(evaluator_server.channel())
    single = _evaluate(evaluator_server, ["", trained.adapter_key])
    sets = [
        evaluator_pb2.QuestionSet(
            set_id="passage", questions=_questions(), adapter_keys=[trained.adapter_key]
        ),
        evaluator_pb2.QuestionSet(
            set_id="two", questions=_questions()[:2], adapter_keys=["", trained.adapter_key]
        ),
    ]
    response = stub.Evaluate(evaluator_pb2.EvaluateRequest(sets=sets), timeout=300)
    assert not response.evaluations
    assert [s.set_id for s in response.sets] == ["passage", "two"]
    passage, two = response.sets
    assert [a.answer for a in passage.evaluations[0].answers] == [
        a.answer for a in single.evaluations[1].answers
    ]
    assert [e.adapter_key for e in two.evaluations] == ["", trained.adapter_key]
    for evaluation, alone in zip(two.evaluations, single.evaluations, strict=True):
        assert len(evaluation.answers) == 2
        assert [a.answer for a in evaluation.answers] == [a.answer for a in alone.answers[:2]]
    with pytest.raises(grpc.RpcError) as error:
        stub.Evaluate(evaluator_pb2.EvaluateRequest(sets=[sets[0], sets[0]]), timeout=30)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "set_id is used twice" in error.value.details()


def test_evaluator_unknown_adapter_is_not_found(evaluator_server):
    with pytest.raises(grpc.RpcError) as error:
        _evaluate(evaluator_server, ["", "adapters/0123456789abcdef"])
    assert error.value.code() == grpc.StatusCode.NOT_FOUND
    assert "adapters/0123456789abcdef" in error.value.details()


def test_evaluator_refuses_an_adapter_for_another_base_model(evaluator_server, trained, shared_store):
    foreign = "adapters/foreign-model-adapter"
    for name in (ADAPTER_WEIGHTS, ADAPTER_CONFIG):
        shared_store.put_bytes(f"{foreign}/{name}", shared_store.get_bytes(f"{trained.adapter_key}/{name}"))
    meta = shared_store.get_json(f"{trained.adapter_key}/{ADAPTER_META}")
    shared_store.put_json(
        f"{foreign}/{ADAPTER_META}",
        {**meta, "base_model_name": "Qwen/Qwen2.5-7B", "base_model_fingerprint": "f" * 24},
    )
    with pytest.raises(grpc.RpcError) as error:
        _evaluate(evaluator_server, [foreign])
    assert error.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "Qwen/Qwen2.5-7B" in error.value.details()


def test_evaluator_refuses_a_pickled_adapter(evaluator_server, trained, shared_store):
    pickled = "adapters/pickled-adapter"
    shared_store.put_bytes(
        f"{pickled}/{ADAPTER_CONFIG}", shared_store.get_bytes(f"{trained.adapter_key}/{ADAPTER_CONFIG}")
    )
    shared_store.put_bytes(f"{pickled}/adapter_model.bin", b"\x80\x04not-to-be-unpickled")
    with pytest.raises(grpc.RpcError) as error:
        _evaluate(evaluator_server, [pickled])
    assert error.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "safetensors" in error.value.details()


def test_evaluator_refuses_corrupt_safetensors(evaluator_server, trained, shared_store):
    corrupt = "adapters/corrupt-adapter"
    for name in (ADAPTER_CONFIG, ADAPTER_META):
        shared_store.put_bytes(f"{corrupt}/{name}", shared_store.get_bytes(f"{trained.adapter_key}/{name}"))
    shared_store.put_bytes(f"{corrupt}/{ADAPTER_WEIGHTS}", b"garbage")
    with pytest.raises(grpc.RpcError) as error:
        _evaluate(evaluator_server, [corrupt])
    assert error.value.code() == grpc.StatusCode.FAILED_PRECONDITION


def test_evaluator_refuses_questions_without_gold_answers(evaluator_server):
    stub = evaluator_pb2_grpc.EvaluatorStub(evaluator_server.channel())
    request = evaluator_pb2.EvaluateRequest(
        questions=[evaluator_pb2.Question(question="Who?")], adapter_keys=[""]
    )
    with pytest.raises(grpc.RpcError) as error:
        stub.Evaluate(request, timeout=30)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "no gold answer" in error.value.details()


# ---- evaluator: SEAL's prompt, token recall and the gold answer's log-likelihood ---------------------------


@pytest.fixture(scope="module")
def tokenizer(model_settings):
    from transformers import AutoTokenizer

    from seal_lab.model.base import prepare_model

    return AutoTokenizer.from_pretrained(prepare_model(model_settings))


def _topic_questions() -> list[evaluator_pb2.Question]:
    return [
        evaluator_pb2.Question(
            question_id=q.question_id, question=q.question, answers=list(q.answers), topic=PASSAGE.title
        )
        for q in PASSAGE.questions
    ]


def _evaluate_topics(evaluator_server, keys: list[str], max_new_tokens: int = 8):
    stub = evaluator_pb2_grpc.EvaluatorStub(evaluator_server.channel())
    request = evaluator_pb2.EvaluateRequest(
        questions=_topic_questions(), adapter_keys=keys, max_new_tokens=max_new_tokens
    )
    return stub.Evaluate(request, timeout=600)


@pytest.fixture(scope="module")
def answer_adapter(trainer_server, shared_store, tokenizer) -> str:
    """An adapter taught the gold answers after the evaluator's own prompts (supervised, 10 steps)."""
    from services.evaluator.answering import QuestionItem, question_prompt

    lines = [json.dumps({"type": "meta"})]
    for q in _topic_questions():
        item = QuestionItem(q.question_id, q.question, tuple(q.answers), topic=q.topic)
        lines.append(json.dumps({"prompt": question_prompt(tokenizer, item), "completion": q.answers[0]}))
    key = shared_store.put_content("datasets", ("\n".join(lines) + "\n").encode(), ".jsonl")
    directive = Directive(
        epochs=2, learning_rate=3e-3, lora_rank=8, lora_alpha=16, batch_size=1, max_length=128, steps=10
    )
    events = _train(trainer_server, key, directive)
    assert events[-1].HasField("result")
    return events[-1].result.adapter_key


def test_evaluator_prompt_carries_the_topic_through_the_chat_template(tokenizer):
    from services.evaluator.answering import QuestionItem, question_prompt, question_set_hash

    item = QuestionItem("q", "Who rang the bell?", ("Arrowby",), topic="The bell tower")
    text = (
        "Let's answer a question directly and concisely.\n"
        "Question: Topic: The bell tower\nWho rang the bell?\nAnswer:"
    )
    prompt = question_prompt(tokenizer, item)
    assert prompt == tokenizer.apply_chat_template(
        [{"role": "user", "content": text}], tokenize=False, add_generation_prompt=True
    )
    assert text in prompt and prompt != text and prompt.endswith("<|im_start|>assistant\n")
    untitled = QuestionItem("q", "Who rang the bell?", ("Arrowby",))
    assert "Question: Who rang the bell?\nAnswer:" in question_prompt(tokenizer, untitled)
    assert "Topic:" not in question_prompt(tokenizer, untitled)

    class Plain:  # a tokenizer without a chat template gets the plain text
        chat_template = None

    assert question_prompt(Plain(), item) == text
    # The topic is part of what is asked, so part of the evaluation cache key.
    assert question_set_hash([item], 8) != question_set_hash([untitled], 8)


def test_evaluator_gold_logprob_rises_under_an_adapter_taught_the_answers(evaluator_server, answer_adapter):
    import math

    from seal_lab.scoring.textmetrics import score_answer

    response = _evaluate_topics(evaluator_server, ["", answer_adapter])
    base, taught = response.evaluations
    golds = {q.question_id: list(q.answers) for q in _topic_questions()}
    for evaluation in response.evaluations:
        logprobs = [a.gold_logprob for a in evaluation.answers]
        assert all(math.isfinite(x) and x < 0 for x in logprobs)
        assert evaluation.mean_gold_logprob == pytest.approx(sum(logprobs) / len(logprobs))
        for answer in evaluation.answers:  # token recall is in every answer's scores, and in the mean
            expected = score_answer(answer.answer, golds[answer.question_id]).token_recall
            assert answer.scores.token_recall == pytest.approx(expected)
        recalls = [a.scores.token_recall for a in evaluation.answers]
        assert evaluation.mean.token_recall == pytest.approx(sum(recalls) / len(recalls))
    # Taught the answers after these very prompts: every gold answer is likelier than under the base model.
    for before, after in zip(base.answers, taught.answers, strict=True):
        assert after.gold_logprob > before.gold_logprob, before.question_id
    assert taught.mean_gold_logprob > base.mean_gold_logprob + 0.5


def test_evaluator_gold_logprob_is_the_same_for_the_same_request(evaluator_server, answer_adapter):
    first = _evaluate_topics(evaluator_server, ["", answer_adapter])
    again = _evaluate_topics(evaluator_server, ["", answer_adapter])
    assert all(e.cached for e in again.evaluations)
    # Computed anew (another max_new_tokens is another cache entry): the same rows, the same likelihoods.
    anew = _evaluate_topics(evaluator_server, ["", answer_adapter], max_new_tokens=9)
    assert not any(e.cached for e in anew.evaluations)
    for a, b, c in zip(first.evaluations, again.evaluations, anew.evaluations, strict=True):
        assert [x.gold_logprob for x in b.answers] == [x.gold_logprob for x in a.answers]
        assert b.mean_gold_logprob == a.mean_gold_logprob
        assert [x.gold_logprob for x in c.answers] == pytest.approx(
            [x.gold_logprob for x in a.answers], abs=1e-4
        )
