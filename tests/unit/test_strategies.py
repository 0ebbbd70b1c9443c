"""Strategy files: the schema, the checks with their lines, rendering, splitting, hashing, the stages (pure)."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from seal_lab.errors import InvalidArgument
from seal_lab.formats.datasets import SelfEditMeta
from seal_lab.formats.passages import demo_passages
from seal_lab.formats.strategies import (
    MAX_STRATEGY_CHARS,
    StrategyError,
    builtin,
    builtin_names,
    check_strategy,
    parse_strategy,
    resolve,
)
from services.coordinator.cli.main import app
from services.generator.backends import RawSelfEdit, Sampling
from services.generator.stages import run_stages

TWO_STAGES = """\
name: two-step
description: entities, then facts
source: a test
stages:
  - name: entities
    template: |-
      List the entities of {{ title }}:
      {{ context }}
    sampling:
      temperature: 0.2
      max_new_tokens: 50
  - name: facts
    template: |-
      Entities: {{ entities }}
      Write facts about {{ title }}.
split:
  kind: regex
  pattern: ";\\\\s*"
example_output: "The lamp is red; Ada made the lamp in 1901"
"""

P = demo_passages()[0]


def _check(text: str):
    return check_strategy(text, "mine.yaml", P.title, P.context)


def test_a_two_stage_file_parses_and_its_second_stage_sees_the_first():
    strategy = _check(TWO_STAGES)
    assert [s.name for s in strategy.stages] == ["entities", "facts"]
    assert (
        strategy.render(1, "T", "C", {"entities": "Ada; lamp"}) == "Entities: Ada; lamp\nWrite facts about T."
    )
    assert strategy.training_texts("The lamp is red; Ada made the lamp in 1901\nTraining: epochs 2") == [
        "The lamp is red",
        "Ada made the lamp in 1901",
    ]


def test_a_template_syntax_error_names_the_file_line():
    bad = TWO_STAGES.replace("Write facts about {{ title }}.", "Write facts about {{ title }.")
    with pytest.raises(StrategyError) as caught:
        _check(bad)
    assert caught.value.message.startswith("mine.yaml:15: stage 'facts': template syntax")


def test_an_unknown_variable_names_its_line_and_what_may_be_used():
    bad = TWO_STAGES.replace("{{ entities }}", "{{ entitys }}")
    with pytest.raises(
        StrategyError,
        match=r"mine\.yaml:14: stage 'facts': unknown variable 'entitys'; "
        r"it may use context, entities, title",
    ):
        _check(bad)


def test_a_stage_cannot_read_a_later_stage():
    bad = TWO_STAGES.replace("List the entities of {{ title }}:", "List {{ facts }}:")
    with pytest.raises(StrategyError, match=r"mine\.yaml:7: .*'facts' \(a later stage's output\)"):
        _check(bad)


def test_a_split_that_finds_nothing_in_the_example_is_refused():
    bad = TWO_STAGES.replace('"The lamp is red; Ada made the lamp in 1901"', '"red; old"')
    with pytest.raises(StrategyError, match=r"mine\.yaml:16: the split rule \(regex, min_words 3\) finds no"):
        _check(bad)


def test_schema_errors_name_the_field_and_its_line():
    bad = TWO_STAGES.replace("temperature: 0.2", "temperature: 5")
    with pytest.raises(StrategyError, match=r"mine\.yaml:10: stages\.0\.sampling\.temperature: "):
        _check(bad)
    with pytest.raises(StrategyError, match=r"mine\.yaml:2: not YAML"):
        _check("name: x\n  bad: [")
    with pytest.raises(StrategyError, match="regex' needs a pattern"):
        _check(TWO_STAGES.replace('  pattern: ";\\\\s*"\n', ""))
    with pytest.raises(StrategyError, match="limit is 16,000"):
        parse_strategy("#" * (MAX_STRATEGY_CHARS + 1))


def test_the_sandbox_refuses_attribute_tricks():
    sneaky = TWO_STAGES.replace("{{ entities }}", "{{ entities.__class__.__mro__ }}")
    strategy = parse_strategy(sneaky)
    with pytest.raises(Exception, match=r"unsafe|__class__|undefined"):
        strategy.render(1, "T", "C", {"entities": "x"})


def test_every_built_in_checks_and_names_its_source():
    assert len(builtin_names()) >= 12
    for name in builtin_names():
        from seal_lab.formats.strategies import builtin_texts

        strategy = _check(builtin_texts()[name])
        assert strategy.name == name and strategy.source and strategy.adapted


def test_the_hash_changes_with_the_strategy_and_originals_record_none():
    for name in ("implications", "rewrite", "self-qa"):
        assert builtin(name).key_hash == ""  # their store keys stay what they were
    changed = resolve("implications", _implications_text().replace("one per line.", "one per line!"))
    assert changed.key_hash == changed.sha256 != builtin("implications").sha256
    assert builtin("entigraph").key_hash == builtin("entigraph").sha256
    meta = dict(
        format="f",
        passage_id="p",
        sample_index=0,
        prompt="",
        raw_output="",
        directive_text="",
        directive={},
        directive_source="default",
        directive_notes=(),
        include_passage=True,
        generated_tokens=0,
        policy_examples=(),
    )
    assert "strategy_sha256" not in SelfEditMeta(**meta).record()
    assert SelfEditMeta(**meta, strategy_sha256="ab").record()["strategy_sha256"] == "ab"


def _implications_text() -> str:
    from seal_lab.formats.strategies import builtin_texts

    return builtin_texts()["implications"]


def test_a_request_s_strategy_must_carry_the_name_it_is_sent_under():
    with pytest.raises(InvalidArgument, match="named 'two-step', not 'other'"):
        resolve("other", TWO_STAGES)
    with pytest.raises(InvalidArgument, match="unknown self-edit format 'haiku'"):
        resolve("haiku")


class _Recording:
    """A backend that answers every prompt with a text naming the stage it is at, and remembers the calls."""

    name = "fake"
    model_name = "fake"

    def __init__(self):
        self.calls = []

    def write(self, prompt, num_samples, sampling, policy_adapter_key, limits, cancelled=None):
        self.calls.append(("write", [prompt], sampling))
        return [RawSelfEdit(f"only {i}", f"only {i}", 3) for i in range(num_samples)]

    def write_each(self, prompts, sampling, policy_adapter_key, limits, cancelled=None, directive=True):
        self.calls.append(("each", prompts, sampling, directive))
        stage = len(self.calls)
        return [
            RawSelfEdit(
                f"s{stage} out {i}", "Training: epochs 2" if directive else "", 5, ((p, f"s{stage} out {i}"),)
            )
            for i, p in enumerate(prompts)
        ]


def test_stages_run_in_order_each_sample_continuing_its_own_earlier_output():
    backend = _Recording()
    strategy = parse_strategy(TWO_STAGES)
    edits = run_stages(backend, strategy, "T", "C", 2, Sampling(0.7, 0.9, 100, 10), "", None)
    first, second = backend.calls
    assert first[1] == ["List the entities of T:\nC"] * 2 and first[3] is False
    assert first[2] == Sampling(0.2, 0.9, 50, 10)  # the stage's own values over the run's
    assert second[1] == [
        "Entities: s1 out 0\nWrite facts about T.",
        "Entities: s1 out 1\nWrite facts about T.",
    ]
    assert second[2] == Sampling(0.7, 0.9, 100, 12) and second[3] is True
    assert [e.stages for e in edits] == [
        ({"name": "entities", "prompt": "List the entities of T:\nC", "output": "s1 out 0"},),
        ({"name": "entities", "prompt": "List the entities of T:\nC", "output": "s1 out 1"},),
    ]
    assert (
        edits[1].raw.text == "s2 out 1"
        and edits[1].raw.tokens == 10
        and len(edits[1].raw.policy_examples) == 2
    )


def test_a_one_stage_strategy_samples_exactly_as_before():
    backend = _Recording()
    edits = run_stages(backend, builtin("implications"), "T", "C", 3, Sampling(0.7, 0.9, 100, 10), "", None)
    assert backend.calls == [
        ("write", [builtin("implications").render(0, "T", "C", {})], Sampling(0.7, 0.9, 100, 10))
    ]
    assert [e.stages for e in edits] == [(), (), ()]


def test_the_cli_lists_shows_and_checks(tmp_path):
    runner = CliRunner()
    listed = runner.invoke(app, ["strategies", "list"])
    assert listed.exit_code == 0 and "entigraph" in listed.stdout and "active-reading" in listed.stdout
    shown = runner.invoke(app, ["strategies", "show", "entigraph"])
    assert shown.exit_code == 0 and "name: entigraph" in shown.stdout
    good = tmp_path / "mine.yaml"
    good.write_text(TWO_STAGES)
    checked = runner.invoke(app, ["strategies", "check", str(good)])
    assert checked.exit_code == 0 and "strategy 'two-step', 2 stage(s)" in checked.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text(TWO_STAGES.replace("{{ entities }}", "{{ entitys }}"))
    refused = runner.invoke(app, ["strategies", "check", str(bad)])
    assert refused.exit_code == 2 and f"{bad}:14: stage 'facts': unknown variable 'entitys'" in refused.output
