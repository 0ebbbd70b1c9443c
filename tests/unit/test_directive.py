"""Directive parsing, clamping and defaults (pure)."""

from __future__ import annotations

import pytest

from seal.v1 import generator_pb2
from seal_lab.formats.directive import (
    DEFAULT_DIRECTIVE,
    Directive,
    DirectiveLimits,
    DirectiveSource,
    directive_source_name,
    format_directive,
    parse_directive,
    strip_directive,
)

LIMITS = DirectiveLimits()


def test_a_complete_directive_is_parsed():
    text = "1. A fact.\nTraining: epochs=3 learning_rate=0.0005 lora_rank=8 lora_alpha=16 batch_size=2 max_length=128"
    parsed = parse_directive(text, LIMITS)
    assert parsed.source is DirectiveSource.PARSED
    assert parsed.directive == Directive(3, 0.0005, 8, 16, 2, 128, steps=0)  # epochs asked: no budget
    assert parsed.notes == ()


def test_format_and_parse_round_trip():
    directive = Directive(7, 2e-4, 32, 64, 8, 512)
    assert parse_directive(format_directive(directive), LIMITS).directive == directive


def test_a_million_epochs_is_clamped_and_recorded():
    parsed = parse_directive(
        "Training: epochs=1000000 learning_rate=1 lora_rank=8 lora_alpha=16 batch_size=2 max_length=64",
        LIMITS,
    )
    assert parsed.source is DirectiveSource.CLAMPED
    assert parsed.directive.epochs == LIMITS.max_epochs
    assert parsed.directive.learning_rate == LIMITS.max_learning_rate
    assert any("epochs=1000000 clamped to 10" in note for note in parsed.notes)


def test_missing_fields_fall_back_to_the_default_one_by_one():
    parsed = parse_directive("Training: epochs=2, lr=3e-4", LIMITS)
    assert parsed.source is DirectiveSource.PARTIAL
    assert parsed.directive.epochs == 2 and parsed.directive.learning_rate == 3e-4
    assert parsed.directive.lora_rank == DEFAULT_DIRECTIVE.lora_rank
    assert "missing" in parsed.notes[-1] and "lora_rank" in parsed.notes[-1]


@pytest.mark.parametrize(
    "text",
    [
        "",
        "1. The prize is old.\n2. It is blue.",
        "Training: as many epochs as you like",
        "Training: epochs=nan",
    ],
)
def test_no_or_garbled_directive_gives_the_documented_default(text):
    parsed = parse_directive(text, LIMITS)
    assert parsed.source is DirectiveSource.DEFAULT
    assert parsed.directive == LIMITS.default
    assert parsed.notes and "default used" in parsed.notes[0]


def test_the_default_comes_from_the_limits():
    limits = DirectiveLimits(default=Directive(epochs=2))
    assert parse_directive("no directive here", limits).directive.epochs == 2


def test_integers_are_rounded_and_negative_values_clamped():
    parsed = parse_directive("Training: epochs=2.6 lora_rank=-5", LIMITS)
    assert parsed.directive.epochs == 3
    assert parsed.directive.lora_rank == LIMITS.min_lora_rank


def test_strip_directive_keeps_the_training_text_only():
    text = "The lamp is red.\nThe lamp is old.\n**Training directive:** epochs=3"
    assert strip_directive(text).strip() == "The lamp is red.\nThe lamp is old."
    # A sentence that merely mentions training is not a directive line.
    assert strip_directive("Training dogs takes time.") == "Training dogs takes time."


def test_violations_name_each_bad_field():
    problems = LIMITS.violations(Directive(epochs=0, learning_rate=float("inf")))
    assert any(p.startswith("epochs=0") for p in problems)
    assert any(p.startswith("learning_rate=inf") for p in problems)
    assert LIMITS.violations(DEFAULT_DIRECTIVE) == []


def test_limits_round_trip_through_proto():
    limits = DirectiveLimits(max_epochs=3, default=Directive(epochs=2))
    assert DirectiveLimits.from_proto(limits.to_proto()) == limits


def test_defaulted_fields_respect_limits_tighter_than_the_default():
    tight = DirectiveLimits(max_epochs=2, max_max_length=128)
    assert parse_directive("Training: epochs=2", tight).directive.max_length == 128
    assert parse_directive("nothing", tight).directive.epochs == 2
    assert tight.with_clamped_default().default.max_length == 128
    assert tight.violations(tight.with_clamped_default().default) == []


def test_a_step_budget_is_read_and_epochs_alone_mean_passes():
    budget = parse_directive("Training: steps=40 learning_rate=0.001", LIMITS)
    assert budget.directive.steps == 40 and budget.directive.learning_rate == 0.001
    assert budget.directive.epochs == LIMITS.default.epochs  # filled in, unused under a step budget
    # A model that asks for epochs and no steps gets epochs (not the default budget).
    passes = parse_directive(
        "Training: epochs=3 learning_rate=0.001", DirectiveLimits(default=Directive(steps=24))
    )
    assert passes.directive.epochs == 3 and passes.directive.steps == 0
    clamped = parse_directive("Training: steps=99999", LIMITS)
    assert clamped.directive.steps == LIMITS.max_steps and clamped.source is DirectiveSource.PARTIAL
    # The line the generator asks for carries the budget, and reads back to the same directive.
    with_budget = Directive(steps=24)
    assert "steps=24" in format_directive(with_budget)
    assert parse_directive(format_directive(with_budget), LIMITS).directive == with_budget
    assert "steps" not in format_directive(Directive(steps=0))


def test_every_directive_source_has_one_proto_value_and_keeps_its_name_across_the_wire():
    protos = {source.to_proto() for source in DirectiveSource}
    assert len(protos) == len(DirectiveSource) and generator_pb2.DIRECTIVE_SOURCE_UNSPECIFIED not in protos
    assert [directive_source_name(s.to_proto()) for s in DirectiveSource] == [
        s.value for s in DirectiveSource
    ]
    assert directive_source_name(generator_pb2.DIRECTIVE_SOURCE_UNSPECIFIED) == "unspecified"
