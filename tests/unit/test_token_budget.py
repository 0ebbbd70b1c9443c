"""The token budget (`Directive.tokens`, issue 32's second equal budget): the trainer's plan, the limits, the
parsing, the wire, the run's held-out override, the run's budget bound, and the store keys of every
directive without one, which must stay what they were before the field existed."""

from __future__ import annotations

from dataclasses import replace

import pytest

from seal.v1 import trainer_pb2
from seal_lab.formats.datasets import DATASET_PREFIX, DATASET_SUFFIX, SelfEditMeta, TrainingExample
from seal_lab.formats.directive import (
    DEFAULT_DIRECTIVE,
    DIRECTIVE_CEILING,
    Directive,
    DirectiveLimits,
    DirectiveSource,
    format_directive,
    parse_directive,
)
from seal_lab.model.grouptrain import _Plan
from seal_lab.store import content_key, jsonl_bytes
from seal_lab.store.local import LocalStore
from services.coordinator.engine.budget import training_tokens, worst_training_tokens
from services.coordinator.engine.manager import RunManager
from services.coordinator.engine.servicecheck import directive_problems
from services.coordinator.run.schemas import RunConfig, RunCreate
from services.trainer.server import TrainJob
from services.trainer.settings import TrainerSettings
from tests.unit.fake_services import FakeClients
from tests.unit.test_orchestrator import run_to_end, scenario, settings

LIMITS = DirectiveLimits().with_clamped_default()
#: Sequences of 10, 20, 30, 40 and 50 tokens (150 in all).
LENGTHS = (10, 20, 30, 40, 50)
ENCODED = [(list(range(n)), list(range(n))) for n in LENGTHS]


def planned_tokens(plan: _Plan) -> list[int]:
    """The tokens of each step of a plan."""
    return [sum(len(plan.sequences[i][0]) for i in step) for step in plan.steps]


# The trainer's plan


def test_a_token_budget_takes_examples_until_their_tokens_reach_it_batch_size_per_step():
    plan = _Plan.build(ENCODED, Directive(batch_size=2, tokens=400), seed=3)
    per_step = planned_tokens(plan)
    last_example = len(plan.sequences[plan.steps[-1][-1]][0])
    assert sum(per_step) >= 400 > sum(per_step) - last_example  # the example that reaches it is the last
    assert all(len(step) == 2 and len(set(step)) == 2 for step in plan.steps[:-1])  # packed, no repeats
    assert 1 <= len(plan.steps[-1]) <= 2
    seen = [i for step in plan.steps for i in step]
    assert sorted(seen[:5]) == [0, 1, 2, 3, 4]  # seeded shuffled passes: the first covers every example once
    # A budget below the first example's tokens: that one example, one step.
    (single,) = _Plan.build(ENCODED, Directive(batch_size=4, tokens=1), seed=3).steps
    assert len(single) == 1
    # One example of 50 tokens against 120: three steps of it (150 tokens), whatever the batch size.
    assert _Plan.build(ENCODED[-1:], Directive(batch_size=4, tokens=120), seed=0).steps == [[0]] * 3


def test_a_token_budget_takes_precedence_over_steps_and_epochs():
    for directive in (Directive(steps=200, tokens=100), Directive(steps=0, epochs=10, tokens=100)):
        plan = _Plan.build(ENCODED, replace(directive, batch_size=1), seed=5)
        assert 100 <= sum(planned_tokens(plan)) < 100 + max(LENGTHS)
        assert len(plan.steps) < 10  # neither 200 steps nor 10 passes of 5 examples
    # Off (0): the step budget and the epochs decide as before.
    assert len(_Plan.build(ENCODED, Directive(batch_size=2, steps=12, tokens=0), seed=5).steps) == 12
    assert len(_Plan.build(ENCODED, Directive(batch_size=2, epochs=2, steps=0), seed=5).steps) == 6


def test_a_token_plan_is_the_step_plans_cut_where_the_tokens_are_spent_and_depends_on_the_seed_alone():
    by_tokens = _Plan.build(ENCODED, Directive(batch_size=2, tokens=500), seed=11)
    by_steps = _Plan.build(ENCODED, Directive(batch_size=2, steps=40), seed=11)
    cut = len(by_tokens.steps)
    assert by_tokens.steps[:-1] == by_steps.steps[: cut - 1]  # the same seeded passes, drawn the same way
    last = by_tokens.steps[-1]
    assert by_steps.steps[cut - 1][: len(last)] == last
    assert _Plan.build(ENCODED, Directive(batch_size=2, tokens=500), seed=11).steps == by_tokens.steps
    others = [_Plan.build(ENCODED, Directive(batch_size=2, tokens=500), seed=s).steps for s in range(12, 16)]
    assert any(other != by_tokens.steps for other in others)


# Limits, parsing, the wire


def test_the_token_budget_has_limits_on_the_wire_and_in_the_trainers_settings():
    assert (LIMITS.min_tokens, LIMITS.max_tokens) == (0, 200_000)
    limits = DirectiveLimits(max_tokens=5000, default=Directive(tokens=1900))
    assert DirectiveLimits.from_proto(limits.to_proto()) == limits
    assert Directive.from_proto(Directive(tokens=1900).to_proto()) == Directive(tokens=1900)
    assert LIMITS.violations(Directive(tokens=200_001)) == ["tokens=200001 is outside [0, 200000]"]
    assert LIMITS.violations(Directive(tokens=-1)) == ["tokens=-1 is outside [0, 200000]"]
    assert LIMITS.clamp(Directive(tokens=10**9)).tokens == 200_000
    assert DirectiveLimits(max_tokens=10**9).beyond(DIRECTIVE_CEILING) == [
        "max_tokens=1000000000 is above 100000000"
    ]
    assert TrainerSettings(max_tokens=7000).max_tokens == 7000
    with pytest.raises(ValueError, match="max_tokens"):
        TrainerSettings(max_tokens=DIRECTIVE_CEILING.max_tokens + 1)


def test_a_written_directive_may_omit_the_token_budget_without_being_partial():
    complete = "A fact.\nTraining: epochs=3 learning_rate=0.0005 lora_rank=8 lora_alpha=16 batch_size=2 max_length=128"
    parsed = parse_directive(complete, LIMITS)
    assert parsed.source is DirectiveSource.PARSED and parsed.notes == ()
    assert parsed.directive.tokens == 0
    # Read under each alias, and clamped like any field.
    for alias in ("tokens", "train_tokens", "token_budget", "training_tokens"):
        asked = parse_directive(f"{complete} {alias}=1500", LIMITS)
        assert asked.directive.tokens == 1500 and asked.source is DirectiveSource.PARSED
    clamped = parse_directive(f"{complete} tokens=9999999", LIMITS)
    assert clamped.directive.tokens == 200_000 and clamped.source is DirectiveSource.CLAMPED
    assert "tokens=9999999 clamped to 200000" in clamped.notes
    # `max_new_tokens` in a directive line is not a token budget.
    assert parse_directive(f"{complete} max_new_tokens=64", LIMITS).directive.tokens == 0
    # The line the generator asks for names a budget only when there is one, and reads back the same.
    assert "tokens" not in format_directive(DEFAULT_DIRECTIVE)
    budget = Directive(tokens=1900)
    assert "tokens=1900" in format_directive(budget)
    assert parse_directive(format_directive(budget), LIMITS).directive == budget


def test_an_override_of_steps_or_epochs_asks_for_that_budget_not_for_a_token_budget_under_it():
    with_tokens = Directive(tokens=1900)
    assert LIMITS.overridden(with_tokens, {"steps": 10}) == Directive(steps=10, tokens=0)
    assert LIMITS.overridden(with_tokens, {"epochs": 2}) == Directive(epochs=2, steps=0, tokens=0)
    assert LIMITS.overridden(with_tokens, {"lora_rank": 4}) == replace(with_tokens, lora_rank=4)
    assert LIMITS.overridden(DEFAULT_DIRECTIVE, {"tokens": 10**9}).tokens == 200_000  # clamped


# Store keys


def test_store_keys_of_directives_without_a_token_budget_are_those_before_the_field_existed():
    recipe = {
        "name": "lora-adamw-v2",
        "target_modules": "all-linear",
        "warmup_ratio": 0.1,
        "decay": True,
        "max_grad_norm": 1.0,
        "text_eos": False,
    }
    job = TrainJob("datasets/" + "ab" * 32 + ".jsonl", DEFAULT_DIRECTIVE, 7)
    # The pre-change values: computed with this very code before `Directive.tokens` was added (commit c66a092).
    assert (
        job.key("f" * 16, recipe)
        == "trainer-jobs/c4dcae2c829239f7f73bd6193348b6df5816dd7b48a258208bf8cf823193ffa6.json"
    )
    merged = TrainJob(
        "datasets/" + "cd" * 32 + ".jsonl",
        Directive(epochs=3, steps=0, batch_size=2),
        3,
        "adapters/" + "ef" * 32,
        True,
    )
    assert (
        merged.key("f" * 16, recipe)
        == "trainer-jobs/8667f20df12e44072b0a44367117c3180e5a69846e30dc543e36d046a4003204.json"
    )
    assert "tokens" not in DEFAULT_DIRECTIVE.as_dict()
    # A self-edit dataset's key: its meta record holds the parsed directive, its source and its notes.
    text = "The bell rang.\n" + format_directive(DEFAULT_DIRECTIVE)
    parsed = parse_directive(text, LIMITS)
    meta = SelfEditMeta(
        "implications",
        "p-1",
        0,
        "prompt",
        text,
        text,
        parsed.directive.as_dict(),
        parsed.source.value,
        parsed.notes,
        True,
        10,
        (),
    )
    records = [meta.record(), TrainingExample("", "The bell rang.").record()]
    assert (  # the pre-change value (commit c66a092)
        content_key(DATASET_PREFIX, jsonl_bytes(records), DATASET_SUFFIX)
        == "datasets/dbef7d5e788fcc30aaaeacae0111f0bc3c5bb04240a05f811a6398e17763be64.jsonl"
    )
    # A token budget is part of the key: the same job with one is another job.
    budget = TrainJob(job.dataset_key, replace(DEFAULT_DIRECTIVE, tokens=1900), 7)
    assert budget.key("f" * 16, recipe) != job.key("f" * 16, recipe)
    assert Directive(tokens=1900).as_dict()["tokens"] == 1900


# The run's held-out override


def test_a_heldout_directive_outside_the_trainers_limits_is_a_422_naming_the_field(tmp_path):
    config = RunConfig(heldout=1, heldout_directive={"tokens": 300_000})
    assert directive_problems(config, LIMITS) == [
        "config.heldout_directive.tokens=300000 is outside [0, 200000]"
    ]
    assert directive_problems(RunConfig(heldout=1, heldout_directive={"tokens": 1900}), LIMITS) == []
    # An old trainer publishes no token limits (0..0): a token budget is refused, not silently dropped.
    old = DirectiveLimits(min_tokens=0, max_tokens=0)
    assert directive_problems(RunConfig(heldout=1, heldout_directive={"tokens": 1900}), old) == [
        "config.heldout_directive.tokens=1900 is outside [0, 0]"
    ]
    with pytest.raises(ValueError, match="at least one field"):
        RunConfig(heldout_directive={})
    with pytest.raises(ValueError, match="heldout_directive"):
        RunConfig(mode="continual", heldout_directive={"tokens": 1900})


def test_the_heldout_directive_trains_every_heldout_condition_and_only_those(tmp_path):
    override = {"tokens": 1900}
    request = RunCreate(
        dataset="demo",
        limit=3,
        config=RunConfig(k=1, retention=False, heldout=1, heldout_directive=override),
    )

    async def body(manager: RunManager, clients: FakeClients, store: LocalStore) -> None:
        run = await run_to_end(manager, await manager.create(request))
        assert run.status == "succeeded"
        trains = [
            r for r in clients.trainer["trainer-a:1"].requests if isinstance(r, trainer_pb2.TrainRequest)
        ]
        heldout = [r for r in trains if "/heldout-" in r.job_id]
        others = [r for r in trains if "/heldout-" not in r.job_id]
        assert len(heldout) == 2 and others  # passage only and p0; the training passages' self-edits
        assert {Directive.from_proto(r.directive) for r in heldout} == {replace(LIMITS.default, tokens=1900)}
        assert all(Directive.from_proto(r.directive).tokens == 0 for r in others)

    scenario(tmp_path, FakeClients(["trainer-a:1"]), settings(), body)


def test_the_runs_token_bound_follows_the_token_budget():
    directive = Directive(tokens=1900, max_length=100)
    assert training_tokens(directive, data_tokens=5000) == 1900 - 1 + 100  # the last example may pass it
    assert training_tokens(directive, data_tokens=40) == 1900 - 1 + 40
    # A model-written directive may ask for the most the limits allow.
    assert worst_training_tokens(LIMITS, 500) == LIMITS.max_tokens - 1 + 500
    assert worst_training_tokens(LIMITS, 500, {"steps": 10}) == 10 * 500  # steps asked: no token budget
    assert worst_training_tokens(LIMITS, 500, {"tokens": 1000}) == 1000 - 1 + 500
