"""Grouped training (many adapters per step) gives each adapter what training it alone gives, and what peft's
own training loop gives; stacked adapters answer as peft does. Real model code on a tiny random Llama."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from seal_lab.errors import InvalidArgument
from seal_lab.formats.datasets import TrainingExample
from seal_lab.formats.directive import Directive
from seal_lab.model.base import load_model
from seal_lab.model.grouptrain import GroupJob, Schedule, TrainOutcome, tokenize, train_group
from seal_lab.model.multilora import (
    StackedLora,
    fresh_adapter,
    load_peft_folder,
    lora_targets,
    save_peft_folder,
)
from seal_lab.settings import ModelSettings
from tests.tiny_model import tiny_llama

TOLERANCE = 2e-5

TEXTS = [
    "The Vellum Bell was cast in 1712 by Pell Arrowby in the town of Qarth.",
    "Its bronze came from melted cannon, and it rang for the first time at the midsummer fair.",
    "Arrowby's workshop stood by the river until the flood of 1731 took it away.",
    "A copy of the bell hangs in the museum.",
]


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory):
    path = tiny_llama(tmp_path_factory.mktemp("tiny"), seed=1)
    return load_model(ModelSettings(name=path, device="cpu", dtype="float32"))


def directive(**changes) -> Directive:
    base = {"epochs": 2, "learning_rate": 1e-3, "lora_rank": 4, "lora_alpha": 8, "batch_size": 1, "steps": 0}
    return Directive(**{**base, "max_length": 64, **changes})


def examples(seed: int, count: int = 4) -> list[TrainingExample]:
    rng = random.Random(seed)
    chosen = rng.sample(TEXTS, k=min(count, len(TEXTS)))
    return [TrainingExample("Q: what do you know?" if i % 2 else "", text) for i, text in enumerate(chosen)]


JOBS = [
    (examples(1), directive(), 11),
    (examples(2, 3), directive(lora_rank=8, lora_alpha=16, learning_rate=5e-4, epochs=3, batch_size=2), 12),
    (examples(3, 2), directive(lora_rank=2, lora_alpha=2, learning_rate=2e-3, epochs=1), 13),
    (examples(4, 3), directive(steps=5, batch_size=2), 14),  # a step budget instead of epochs
]


def _max_difference(first: TrainOutcome, second: TrainOutcome) -> float:
    assert first.adapter is not None and second.adapter is not None
    assert first.adapter.rank == second.adapter.rank
    return max(
        float((a1 - a2).abs().max().item()) + float((b1 - b2).abs().max().item())
        for (a1, b1), (a2, b2) in (
            (first.adapter.weights[name], second.adapter.weights[name]) for name in first.adapter.weights
        )
    )


def test_an_adapter_trained_in_a_group_equals_the_one_trained_alone(loaded):
    """Mixed ranks, learning rates, lengths, batch sizes, budgets and seeds in one group."""
    group = train_group(loaded, [GroupJob(*job) for job in JOBS], row_tokens=48)
    for job, grouped in zip(JOBS, group, strict=True):
        (alone,) = train_group(loaded, [GroupJob(*job)])
        assert isinstance(grouped, TrainOutcome) and isinstance(alone, TrainOutcome)
        assert grouped.group_size == len(JOBS) and alone.group_size == 1
        steps = job[1].steps or job[1].epochs * -(-len(job[0]) // job[1].batch_size)
        assert len(grouped.step_loss) == len(alone.step_loss) == steps
        assert grouped.step_loss == pytest.approx(alone.step_loss, abs=1e-4)
        assert _max_difference(grouped, alone) < TOLERANCE
        # Training moved the weights (B starts at zero).
        assert max(float(b.abs().max()) for _, b in grouped.adapter.weights.values()) > 1e-4


def test_a_token_budget_trains_until_its_tokens_are_spent_in_a_group_as_alone(loaded):
    """`Directive.tokens`: the job trains on its budget of tokens (its last example may pass it), whatever its
    `steps`, and grouped with a step-budget job as alone; the outcome counts the tokens it trained on."""
    train_examples = examples(5)
    sequences = tokenize(loaded, train_examples, 64)
    budget = 5 * sum(len(ids) for ids, _ in sequences) // 2  # two and a half passes over the data
    job = (train_examples, directive(tokens=budget, steps=24, batch_size=2), 15)
    grouped, _ = train_group(loaded, [GroupJob(*job), GroupJob(*JOBS[3])], row_tokens=48)
    (alone,) = train_group(loaded, [GroupJob(*job)])
    assert isinstance(grouped, TrainOutcome) and isinstance(alone, TrainOutcome)
    assert budget <= grouped.tokens == alone.tokens < budget + max(len(ids) for ids, _ in sequences)
    assert 4 <= len(grouped.step_loss) < 24  # about 10 examples of 4, 2 per step: the tokens decide
    assert grouped.step_loss == pytest.approx(alone.step_loss, abs=1e-4)
    assert _max_difference(grouped, alone) < TOLERANCE


def test_training_alone_equals_peft_training(loaded):
    """The stacked path of one adapter against peft's LoRA, torch's AdamW, torch's gradient clipping and a
    LambdaLR with the recipe's warmup and decay, one example per step."""
    import torch
    from peft import LoraConfig, get_peft_model

    train_examples, job_directive, seed = JOBS[0]
    schedule = Schedule()  # the default recipe: warmup, linear decay, gradient norm clipped to 1
    assert schedule.max_grad_norm > 0 and schedule.warmup_ratio > 0
    (ours,) = train_group(loaded, [GroupJob(train_examples, job_directive, seed)], schedule=schedule)
    sequences = tokenize(loaded, train_examples, job_directive.max_length)
    torch.manual_seed(seed)
    config = LoraConfig(
        r=4, lora_alpha=8, lora_dropout=0.0, target_modules="all-linear", task_type="CAUSAL_LM"
    )
    peft_model = get_peft_model(loaded.model, config)
    try:
        params = [p for p in peft_model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=job_directive.learning_rate, weight_decay=0.0)
        total = job_directive.epochs * len(sequences)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: schedule.factor(step, total))
        order_rng = random.Random(seed)
        losses = []
        for _ in range(job_directive.epochs):
            order = list(range(len(sequences)))
            order_rng.shuffle(order)
            for i in order:
                ids, labels = sequences[i]
                loss = peft_model(input_ids=torch.tensor([ids]), labels=torch.tensor([labels])).loss
                loss.backward()
                torch.nn.utils.clip_grad_norm_(params, schedule.max_grad_norm)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad()
                losses.append(float(loss.detach()))
        reference = {
            name.removeprefix("base_model.model.").replace(".default", ""): p.detach().clone()
            for name, p in peft_model.named_parameters()
            if "lora_" in name
        }
    finally:
        peft_model.unload()
    assert ours.step_loss == pytest.approx(losses, abs=1e-4)
    for name, (a, b) in ours.adapter.weights.items():
        assert torch.allclose(a, reference[f"{name}.lora_A.weight"], atol=TOLERANCE)
        assert torch.allclose(b, reference[f"{name}.lora_B.weight"], atol=TOLERANCE)


def test_a_bad_job_fails_alone_and_the_group_trains_on(loaded):
    empty = GroupJob([TrainingExample("", "x")], directive(), 5)  # one token: nothing to predict
    good = GroupJob(*JOBS[0])
    results = train_group(loaded, [empty, good])
    assert isinstance(results[0], InvalidArgument)
    assert isinstance(results[1], TrainOutcome) and results[1].group_size == 1
    (alone,) = train_group(loaded, [GroupJob(*JOBS[0])])
    assert _max_difference(results[1], alone) == 0.0  # same group of one: bit for bit


def test_fresh_adapters_start_where_peft_starts(loaded):
    import torch
    from peft import LoraConfig, get_peft_model

    targets = lora_targets(loaded.model, "all-linear")
    torch.manual_seed(7)
    peft_model = get_peft_model(loaded.model, LoraConfig(r=3, lora_alpha=6, target_modules="all-linear"))
    try:
        reference = {n: p.detach().clone() for n, p in peft_model.named_parameters() if "lora_" in n}
    finally:
        peft_model.unload()
    ours = fresh_adapter(loaded.model, targets, rank=3, alpha=6, seed=7)
    assert len(reference) == 2 * len(ours.weights)
    for name, (a, b) in ours.weights.items():
        assert torch.equal(a, reference[f"base_model.model.{name}.lora_A.default.weight"])
        assert torch.equal(b, reference[f"base_model.model.{name}.lora_B.default.weight"])


def test_stacked_adapters_answer_like_peft_per_row(loaded, tmp_path: Path):
    """Saved as a peft folder, loaded back, stacked with another adapter and the base: each row gets its own."""
    import torch
    from peft import PeftModel

    targets = lora_targets(loaded.model, "all-linear")
    (trained,) = train_group(loaded, [GroupJob(*JOBS[1])])
    save_peft_folder(tmp_path / "adapter", trained.adapter, "all-linear", loaded.model)
    ids = torch.tensor([tokenize(loaded, [TrainingExample("", TEXTS[0])], 64)[0][0]])
    with torch.no_grad():
        base = loaded.model(input_ids=ids).logits
    peft_model = PeftModel.from_pretrained(loaded.model, str(tmp_path / "adapter"))
    try:
        with torch.no_grad():
            adapted = peft_model(input_ids=ids).logits
    finally:
        peft_model.unload()
    assert float((adapted - base).abs().max()) > 1e-3
    other = fresh_adapter(loaded.model, targets, rank=2, alpha=4, seed=3)
    stack = StackedLora(loaded.model, targets, [other, load_peft_folder(tmp_path / "adapter", targets)])
    with stack.applied() as routing, torch.no_grad():
        routing.per_row(torch.tensor([1, -1, 1]))
        rows = loaded.model(input_ids=ids.repeat(3, 1)).logits
    assert torch.allclose(rows[0], adapted[0], atol=1e-5)
    assert torch.allclose(rows[1], base[0], atol=1e-5)
    assert torch.allclose(rows[2], adapted[0], atol=1e-5)


def test_answers_under_stacked_adapters_equal_answers_one_at_a_time(loaded):
    """The evaluator's batched generate: two adapters and the base model in one batch, greedy answers equal
    to each answered alone."""
    from services.evaluator.answering import AnswerTask, QuestionItem, answer_tasks

    targets = lora_targets(loaded.model, "all-linear")
    trained = [r.adapter for r in train_group(loaded, [GroupJob(*JOBS[0]), GroupJob(*JOBS[2])])]
    questions = [QuestionItem(f"q{i}", f"Who cast bell number {i}?", ("Arrowby",)) for i in range(3)]
    tasks = [
        AnswerTask(questions, trained[0]),
        AnswerTask(questions, None),
        AnswerTask(questions[:2], trained[1]),
    ]
    together = answer_tasks(loaded, tasks, targets, max_new_tokens=8, batch_size=64)
    for task, record in zip(tasks, together, strict=True):
        (alone,) = answer_tasks(loaded, [task], targets, max_new_tokens=8, batch_size=64)
        assert [a["answer"] for a in record["answers"]] == [a["answer"] for a in alone["answers"]]
    assert len(together[2]["answers"]) == 2


def test_runs_of_tokens_are_found_in_order():
    import torch

    from seal_lab.model.multilora import Runs, _runs

    assert _runs(torch.tensor([0, 0, 1, 1, 1, -1, 2])) == Runs([0, 1, -1, 2], [2, 3, 1, 1])
    assert _runs(torch.tensor([3])) == Runs([3], [1])


def test_the_cpu_runs_path_equals_the_batched_gather_path(loaded):
    """The two ways `StackedLoraLinear` applies a group (slices per run on a CPU, gather + bmm on CUDA) give
    the same outputs and the same gradients, with pads (-1) and a slot that appears in two runs."""
    import torch

    model = loaded.model
    targets = lora_targets(model, "all-linear")
    adapters = [
        fresh_adapter(model, targets, rank, 2 * rank, seed) for rank, seed in ((4, 1), (2, 2), (4, 3))
    ]
    for adapter in adapters:  # B is zero at the start: give every adapter a path that changes the output
        for name, (a, b) in adapter.weights.items():
            adapter.weights[name] = (
                a,
                torch.randn(b.shape, generator=torch.Generator().manual_seed(7)) * 0.1,
            )
    ids = torch.randint(5, 500, (2, 9), generator=torch.Generator().manual_seed(0))
    slots = torch.tensor([[0, 0, 0, 1, 1, 2, 2, 2, -1], [2, 2, 1, 1, 1, 0, 0, -1, -1]])
    results = []
    for use_runs in (True, False):
        stack = StackedLora(model, targets, adapters, trainable=True)
        with stack.applied() as routing:
            routing.use_runs = use_runs
            routing.per_token(slots)
            logits = model(input_ids=ids, use_cache=False).logits
            logits.square().mean().backward()
        results.append((logits.detach(), stack.flat.grad.clone()))
    (logits_runs, grad_runs), (logits_gather, grad_gather) = results
    assert torch.allclose(logits_runs, logits_gather, atol=1e-5)
    assert torch.allclose(grad_runs, grad_gather, atol=1e-6, rtol=1e-4)
    assert grad_runs.abs().sum() > 0
