"""Run request validation (rounds, held-out passages, teachers, directive search) and the CLI's parsers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from services.coordinator.cli.api_client import CoordinatorError
from services.coordinator.cli.main import read_teacher
from services.coordinator.cli.runbody import config_value
from services.coordinator.run.schemas import DirectiveOverride, RunConfig, RunCreate, TeacherImport

PASSAGE = {
    "title": "T",
    "context": "The lamp is red.",
    "questions": [{"question": "Colour?", "answer": "red"}],
}


def parse_directive_search(text: str) -> list[dict[str, float]]:
    """What `seal-lab run --directive-search TEXT` sends."""
    return config_value("directive_search", text)


def _teacher(name: str = "gpt") -> dict[str, Any]:
    return {"name": name, "passages": [{"context": "The lamp is red.", "completions": ["It is red."]}]}


# ---- RunConfig ---------------------------------------------------------------------------------------------


def test_defaults():
    config = RunConfig()
    assert config.rounds == 0 and config.heldout == 0 and config.directive_search == []
    assert config.heldout_edit_format == "implications"
    assert config.policy_directive.max_length == 1024


def test_heldout_format_must_be_one_of_the_formats():
    with pytest.raises(ValidationError, match="heldout_format 'rewrite' is not one of formats"):
        RunConfig(heldout_format="rewrite")
    config = RunConfig(formats=["implications", "rewrite"], heldout_format="rewrite")
    assert config.heldout_edit_format == "rewrite"


def test_duplicate_formats_are_rejected():
    with pytest.raises(ValidationError, match="formats has duplicates"):
        RunConfig(formats=["rewrite", "rewrite"])


@pytest.mark.parametrize("field", [{"rounds": -1}, {"rounds": 11}, {"heldout": -1}])
def test_out_of_range_rounds_and_heldout(field):
    with pytest.raises(ValidationError):
        RunConfig(**field)


def test_directive_search_entries():
    config = RunConfig(directive_search=[{"epochs": 2}, {"epochs": 8, "learning_rate": 1e-3}])
    assert [o.fields_set() for o in config.directive_search] == [
        {"epochs": 2},
        {"epochs": 8, "learning_rate": 1e-3},
    ]
    with pytest.raises(ValidationError, match="at least one field"):
        RunConfig(directive_search=[{}])
    with pytest.raises(ValidationError):
        RunConfig(directive_search=[{"epochs": 1}] * 9)


def test_an_empty_directive_override_is_rejected():
    with pytest.raises(ValidationError, match="a directive override needs at least one field"):
        DirectiveOverride()
    with pytest.raises(ValidationError, match="at least one field"):
        DirectiveOverride(epochs=None)


@pytest.mark.parametrize(
    "fields", [{"epochs": 0}, {"learning_rate": 0.0}, {"lora_rank": 0}, {"dropout": 0.1}, {"epochs": 1.5}]
)
def test_bad_directive_override_fields(fields):
    with pytest.raises(ValidationError):
        DirectiveOverride(**fields)


def test_policy_directive_rejects_unknown_fields():
    with pytest.raises(ValidationError):
        RunConfig(policy_directive={"epochs": 1, "warmup": 3})


# ---- RunCreate -----------------------------------------------------------------------------------------------


def test_teachers_need_heldout_passages():
    with pytest.raises(ValidationError, match="teachers are compared on held-out passages"):
        RunCreate(dataset="demo", teachers=[_teacher()])
    assert RunCreate(dataset="demo", teachers=[_teacher()], config={"heldout": 1}).teachers[0].name == "gpt"
    created = RunCreate(passages=[PASSAGE], heldout_passages=[PASSAGE], teachers=[_teacher()])
    assert created.teachers[0].completion_index == 0 and created.teachers[0].format == "implications"


def test_teacher_names_must_be_unique():
    with pytest.raises(ValidationError, match="teacher names must be unique"):
        RunCreate(dataset="demo", teachers=[_teacher(), _teacher()], config={"heldout": 1})


def test_heldout_passages_and_config_heldout_are_exclusive():
    with pytest.raises(ValidationError, match=r"either `heldout_passages` or `config\.heldout`"):
        RunCreate(passages=[PASSAGE], heldout_passages=[PASSAGE], config={"heldout": 1})


def test_exactly_one_passage_source():
    with pytest.raises(ValidationError, match="exactly one of `dataset` or `passages`"):
        RunCreate()
    with pytest.raises(ValidationError, match="exactly one of `dataset` or `passages`"):
        RunCreate(dataset="demo", passages=[PASSAGE])


@pytest.mark.parametrize("name", ["GPT", "gpt 4", "-gpt", "_gpt", "", "a" * 41, "gpt/4", "teacher!"])
def test_bad_teacher_names(name):
    with pytest.raises(ValidationError, match="name"):
        TeacherImport(**_teacher(name))


@pytest.mark.parametrize("name", ["gpt", "gpt4_1", "gpt-4.1", "0shot", "a" * 40])
def test_good_teacher_names(name):
    assert TeacherImport(**_teacher(name)).name == name


def test_a_teacher_needs_passages_and_a_valid_completion_index():
    with pytest.raises(ValidationError):
        TeacherImport(name="gpt", passages=[])
    with pytest.raises(ValidationError):
        TeacherImport(**_teacher(), completion_index=-1)
    with pytest.raises(ValidationError):
        RunCreate(dataset="demo", teachers=[_teacher(str(i)) for i in range(9)], config={"heldout": 1})


# ---- CLI -------------------------------------------------------------------------------------------------------


def test_parse_directive_search():
    assert parse_directive_search("epochs=2;epochs=8,learning_rate=1e-3") == [
        {"epochs": 2},
        {"epochs": 8, "learning_rate": 0.001},
    ]
    parsed = parse_directive_search("epochs=2;epochs=8,learning_rate=1e-3")
    assert isinstance(parsed[0]["epochs"], int)


def test_parse_directive_search_keeps_learning_rates_float_and_ignores_blanks():
    parsed = parse_directive_search(" lora_rank = 8 , learning_rate=1 ; ; epochs=3.0 ;")
    assert parsed == [{"lora_rank": 8, "learning_rate": 1.0}, {"epochs": 3}]
    assert isinstance(parsed[0]["learning_rate"], float) and isinstance(parsed[1]["epochs"], int)
    assert parse_directive_search("") == [] and parse_directive_search(" ; ") == []
    # What it produces is what RunConfig accepts.
    assert RunConfig(directive_search=parsed).directive_search[0].lora_rank == 8


@pytest.mark.parametrize("text", ["epochs", "epochs=two", "epochs=2;lora_rank", "epochs=2,lr=", "epochs:2"])
def test_parse_directive_search_errors(text):
    with pytest.raises(CoordinatorError, match=r"--directive-search: .* is not FIELD=NUMBER"):
        parse_directive_search(text)


def test_read_teacher(tmp_path: Path):
    path = tmp_path / "gpt.json"
    entries = [
        {"title": "T", "context": "The lamp is red.", "completions": ["a", "b"], "extra": 1},
        "not an object",
    ]
    path.write_text(json.dumps(entries), encoding="utf-8")
    teacher = read_teacher(f"gpt4_1={path}")
    assert teacher == {
        "name": "gpt4_1",
        "passages": [{"context": "The lamp is red.", "completions": ["a", "b"]}],
    }
    assert TeacherImport(**teacher).name == "gpt4_1"


@pytest.mark.parametrize("spec", ["gpt", "=file.json", "gpt="])
def test_read_teacher_needs_name_and_file(spec):
    with pytest.raises(CoordinatorError, match="expected NAME=FILE"):
        read_teacher(spec)


def test_read_teacher_file_errors(tmp_path: Path):
    with pytest.raises(CoordinatorError, match="no such file"):
        read_teacher(f"gpt={tmp_path / 'missing.json'}")
    (tmp_path / "bad.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(CoordinatorError, match="not a JSON file"):
        read_teacher(f"gpt={tmp_path / 'bad.json'}")
    (tmp_path / "obj.json").write_text("{}", encoding="utf-8")
    with pytest.raises(CoordinatorError, match="expected a JSON list"):
        read_teacher(f"gpt={tmp_path / 'obj.json'}")


def test_an_epochs_override_trains_epochs_and_the_policy_update_trains_its_epochs():
    from seal_lab.formats.directive import DEFAULT_DIRECTIVE, Directive, DirectiveLimits
    from services.coordinator.engine.experiment import directive_trials
    from services.coordinator.run.records import SelfEdit

    limits = DirectiveLimits()
    config = RunConfig(directive_search=[{"epochs": 1}, {"steps": 8}, {"epochs": 2, "steps": 6}])
    edit = SelfEdit(directive=DEFAULT_DIRECTIVE.as_dict())  # a step budget (24)
    trials = [trial.as_dict() for trial in directive_trials(edit, config, limits)]
    assert trials[0]["steps"] == DEFAULT_DIRECTIVE.steps > 0
    # Asking for epochs without a budget means epochs (as a written directive does), not the own budget.
    assert (trials[1]["epochs"], trials[1]["steps"]) == (1, 0)
    assert trials[2]["steps"] == 8 and trials[2]["epochs"] == DEFAULT_DIRECTIVE.epochs
    assert (trials[3]["epochs"], trials[3]["steps"]) == (2, 6)
    # ReST-EM's SFT step trains its epochs (2), not the default directive's step budget.
    policy = Directive(**RunConfig().policy_directive.model_dump())
    assert (policy.epochs, policy.steps) == (2, 0)


def test_retention_questions_beyond_the_set_is_refused_with_its_size():
    assert RunConfig(retention_questions=16).retention_questions == 16
    with pytest.raises(ValidationError, match="more than the retention set's 64 questions"):
        RunConfig(retention_questions=65)


def test_booleans_are_refused_only_where_a_number_is_meant():
    with pytest.raises(ValidationError) as info:
        RunConfig.model_validate({"min_reward": True})
    assert (
        info.value.errors()[0]["loc"] == ("min_reward",) and info.value.errors()[0]["type"] == "number_type"
    )
    # Boolean fields take booleans, and lax mode stays for numbers: PyYAML reads `1e-3` as a string.
    config = RunConfig.model_validate(
        {
            "include_passage": False,
            "retention": False,
            "policy_directive": {"learning_rate": "1e-3", "epochs": 2.0},
        }
    )
    assert config.include_passage is False and config.policy_directive.learning_rate == 0.001
    assert config.policy_directive.epochs == 2


def test_a_self_edit_trains_with_the_trainers_default_directive_unless_the_run_asks_for_its_own():
    from seal_lab.formats.directive import DirectiveLimits
    from services.coordinator.engine.experiment import directive_trials
    from services.coordinator.run.records import SelfEdit

    limits = DirectiveLimits()
    written = {"epochs": 10, "learning_rate": 0.01, "lora_rank": 8, "lora_alpha": 128, "steps": 0}
    edit = SelfEdit(directive=written)
    default = directive_trials(edit, RunConfig(directive_search=[{"epochs": 2}]), limits)
    assert default[0] == limits.default  # what the model wrote is recorded, not trained
    assert (default[1].epochs, default[1].steps, default[1].learning_rate) == (
        2,
        0,
        limits.default.learning_rate,
    )
    own = directive_trials(edit, RunConfig(self_edit_directive="generated"), limits)
    assert {k: own[0].as_dict()[k] for k in written} == written
    with pytest.raises(ValidationError, match="self_edit_directive"):
        RunConfig(self_edit_directive="mine")
