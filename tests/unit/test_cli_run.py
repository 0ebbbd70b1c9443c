"""`seal-lab run`: a config file holds the body of POST /v1/runs, options typed on the command line override
it, and every field of the request can be set. The coordinator is the real app in process
(tests/unit/cli_coordinator.py), so its validation judges what the CLI sends."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, get_args

import pytest
import typer
from pydantic import Field
from typer.testing import CliRunner

from seal_lab.formats.strategies import builtin_texts
from services.coordinator.cli import main as cli
from services.coordinator.cli.runbody import (
    CONFIG_FILE_ONLY,
    CONFIG_OPTIONS,
    RUN_BODY_PATHS,
    config_options,
    config_value,
    read_config,
    with_config_options,
)
from services.coordinator.run.schemas import PolicyDirective, RunConfig, RunCreate, TeacherImport

from . import cli_coordinator

coordinator = cli_coordinator.coordinator  # the fixture, for this module

PASSAGE = {
    "title": "T",
    "context": "The lamp is red.",
    "questions": [{"question": "Colour?", "answer": "red"}],
}
OTHER_PASSAGE = {**PASSAGE, "title": "U", "context": "The door is blue."}
TEACHER_FILE = [{"context": "The lamp is red.", "completions": ["The lamp is red.", "Red lamp."]}]


def without_ids(passages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A dataset file's passages as sent: the CLI's loader (seal_lab.formats.passages) gives each its derived id."""
    return [{k: v for k, v in p.items() if k != "id"} for p in passages]


def invoke(*args: str) -> Any:
    return CliRunner().invoke(cli.app, ["run", "--no-follow", *args])


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_a_yaml_config_is_the_request_and_typed_options_override_it(coordinator, tmp_path):
    config = write(
        tmp_path / "run.yaml",
        "name: from-the-file\ndataset: demo\nlimit: 2\nconfig:\n  k: 2\n  top_p: 0.8\n  formats: [rewrite]\n",
    )
    result = invoke("--config", str(config), "--k", "5", "--name", "typed")
    assert result.exit_code == 0, result.output
    sent = coordinator.sent
    assert sent["name"] == "typed" and sent["config"]["k"] == 5  # typed: override the file
    assert sent["limit"] == 2 and sent["config"]["top_p"] == 0.8 and sent["config"]["formats"] == ["rewrite"]
    # Options left at their defaults do not override the file, nor are sent: the coordinator's defaults stand.
    assert "retention" not in sent["config"] and "teachers" not in sent
    assert coordinator.manager.created[0].config.k == 5


def test_a_json_config_with_inline_passages_and_an_override(coordinator, tmp_path):
    body = {"passages": [PASSAGE], "config": {"seed": 3, "include_passage": False}}
    config = write(tmp_path / "run.json", json.dumps(body))
    result = invoke("--config", str(config), "--seed", "7")
    assert result.exit_code == 0, result.output
    sent = coordinator.sent
    assert sent["passages"] == [PASSAGE] and "dataset" not in sent  # no demo set added to the file's passages
    assert sent["config"] == {"seed": 7, "include_passage": False}


def test_dataset_option_replaces_the_files_dataset(coordinator, tmp_path):
    config = write(tmp_path / "run.yml", "dataset: demo\n")
    dataset = write(tmp_path / "passages.json", json.dumps([PASSAGE, OTHER_PASSAGE]))
    assert invoke("--config", str(config), "--dataset", str(dataset), "--limit", "1").exit_code == 0
    assert "dataset" not in coordinator.sent and without_ids(coordinator.sent["passages"]) == [PASSAGE]


def test_an_unknown_key_in_the_config_gets_the_coordinators_422(coordinator, tmp_path):
    config = write(tmp_path / "run.yaml", "dataset: demo\nconfig:\n  kk: 3\n")
    result = invoke("--config", str(config))
    assert result.exit_code == 2
    assert "coordinator answered 422: body.config.kk: Extra inputs are not permitted" in result.stderr
    assert result.stdout == "" and "Traceback" not in result.output


@pytest.mark.parametrize(
    ("file_name", "text", "says"),
    [
        ("run.json", '{"dataset": "demo",', "not valid JSON (line 1, column 20"),
        ("run.yaml", "config: [k: 3\nname: x\n", "not valid YAML (line"),
        ("run.yaml", "- dataset: demo\n", "expected a mapping of the run's fields"),
        ("run.yaml", "", "found nothing"),
        ("run.yaml", "config: [1, 2]\n", "`config` must be a mapping"),
        ("run.yaml", "name: 2026-11-29\n", "date is not JSON serializable"),
        ("run.yaml", "config: {min_reward: .nan}\n", "Out of range float values"),
    ],
)
def test_a_bad_config_file_is_one_line_and_exit_2(coordinator, tmp_path, file_name, text, says):
    result = invoke("--config", str(write(tmp_path / file_name, text)))
    assert result.exit_code == 2, result.output
    assert says in result.stderr and result.stderr.startswith("error: ")
    assert result.stderr.count("\n") == 1, result.stderr  # one line, however long the path
    assert result.stdout == "" and coordinator.requests == []


def test_a_missing_config_file_is_said_so(coordinator, tmp_path):
    result = invoke("--config", str(tmp_path / "nope.yaml"))
    assert result.exit_code == 2 and "nope.yaml: no such file" in result.stderr


def _run_command_options() -> set[str]:
    command = typer.main.get_command(cli.app).commands["run"]  # type: ignore[attr-defined]
    return {param.name for param in command.params if param.name}


def test_every_field_of_the_request_is_reachable_from_run():
    reachable_top = {path[0] for path in RUN_BODY_PATHS.values()}
    assert set(RunCreate.model_fields) == reachable_top | set(CONFIG_FILE_ONLY)
    assert len(CONFIG_FILE_ONLY) <= 1  # an exception needs a reason; keep the list tiny
    assert set(CONFIG_OPTIONS) == set(RunConfig.model_fields)
    assert set(RUN_BODY_PATHS) <= _run_command_options()
    # --teacher NAME:FORMAT:INDEX=FILE and --policy-directive reach every field of theirs.
    every = {name: 64 if name != "learning_rate" else 1e-4 for name in PolicyDirective.model_fields}
    policy = config_value("policy_directive", ",".join(f"{k}={v}" for k, v in every.items()))
    assert PolicyDirective(**policy).model_fields_set == set(PolicyDirective.model_fields)


def test_every_runconfig_field_is_an_option_whose_help_is_the_fields_description():
    command = typer.main.get_command(cli.app).commands["run"]  # type: ignore[attr-defined]
    params = {param.name: param for param in command.params}
    for name, field in RunConfig.model_fields.items():
        assert field.description, f"RunConfig.{name} needs a description: it is the help of --{name}"
        option = params[name]
        assert f"--{name.replace('_', '-')}" in option.opts
        assert option.help.startswith(field.description.rstrip(".")), (name, option.help)


def test_a_new_runconfig_field_is_an_option_without_touching_the_cli():
    class Grown(RunConfig):
        warmup_steps: int = Field(5, ge=0, description="optimizer steps before the full learning rate")
        tags: list[str] = Field(["a", "b"], description="labels of the run")

    app, options = typer.Typer(), config_options(Grown)
    seen: dict[str, Any] = {}

    @app.command()
    @with_config_options(options)
    def go(**config: Any) -> None:
        seen.update({name: options[name].to_value(value) for name, value in config.items()})

    shown = CliRunner().invoke(app, ["--help"], env={"COLUMNS": "200"})
    assert (
        "--warmup-steps" in shown.output and "optimizer steps before the full learning rate" in shown.output
    )
    result = CliRunner().invoke(app, ["--warmup-steps", "7", "--tags", "x, y", "--no-retention"])
    assert result.exit_code == 0, result.output
    assert (seen["warmup_steps"], seen["tags"], seen["retention"], seen["k"]) == (7, ["x", "y"], False, 3)
    assert Grown(**{k: v for k, v in seen.items() if v is not None}).warmup_steps == 7


def test_a_field_with_no_command_line_form_is_refused_by_name():
    class Odd(RunConfig):
        weights: dict[str, float] = Field({}, description="per-format weights")

    with pytest.raises(TypeError, match=r"Odd\.weights: no command-line form"):
        config_options(Odd)


def test_every_option_lands_in_the_request_with_its_value(coordinator, tmp_path):
    teacher = write(tmp_path / "teacher.json", json.dumps(TEACHER_FILE))
    dataset = write(tmp_path / "passages.json", json.dumps([{**PASSAGE, "title": f"T{i}"} for i in range(3)]))
    # a strategy file named like a built-in replaces it in this run
    strategy = write(tmp_path / "rewrite.yaml", builtin_texts()["rewrite"].replace("a few", "several"))
    args = {
        "--name": "all", "--dataset": str(dataset), "--limit": "3", "--k": "2", "--formats": "rewrite,self-qa",
        "--temperature": "0.5", "--top-p": "0.5", "--max-new-tokens": "64", "--seed": "9",
        "--reward-metric": "contains", "--reward-seeds": "2", "--eval-max-new-tokens": "16",
        "--policy-adapter-key": "adapters/policy/abc", "--retention-questions": "4", "--retention-heldout": "1",
        "--rounds": "1", "--heldout": "1", "--heldout-format": "self-qa", "--conditions-directive": "generated",
        "--self-edit-directive": "generated",
        "--policy-directive": "epochs=3,learning_rate=5e-4", "--min-reward": "0.1",
        "--directive-search": "epochs=2", "--heldout-directive": "tokens=900", "--teacher": f"gpt:rewrite:1={teacher}",
        "--strategy-files": str(strategy),
    }  # fmt: skip
    flags = ["--no-retention", "--no-include-passage", "--no-specificity-control", "--question-topic"]
    result = invoke(*[part for pair in args.items() for part in pair], *flags)
    assert result.exit_code == 0, result.output
    request = coordinator.manager.created[0]  # as the coordinator read it
    changed = {
        name
        for name in RunConfig.model_fields
        if getattr(request.config, name) != RunConfig.model_fields[name].default
    }
    # the continual fields are refused on a standard run, retention_lambda with --no-retention:
    # test_continual_options_land_in_the_request sets them
    assert changed | {"policy_directive"} == set(RunConfig.model_fields) - CONTINUAL_ONLY - {
        "retention_lambda"
    }
    assert (
        request.config.policy_directive.epochs == 3 and request.config.policy_directive.learning_rate == 5e-4
    )
    assert request.config.heldout_directive is not None
    assert request.config.heldout_directive.fields_set() == {"tokens": 900}
    assert (request.name, request.limit, len(request.passages or [])) == ("all", 3, 3)
    assert "rewrite it in several different ways" in request.config.strategy_text("rewrite")
    imported = request.teachers[0]
    assert (imported.name, imported.format, imported.completion_index) == ("gpt", "rewrite", 1)


CONTINUAL_ONLY = {
    "mode", "order", "orderings", "continual_pick", "continual_carry", "continual_replay", "continual_update"
}  # fmt: skip


def test_continual_options_land_in_the_request(coordinator, tmp_path):
    dataset = write(tmp_path / "passages.json", json.dumps([{**PASSAGE, "title": f"T{i}"} for i in range(3)]))
    args = {
        "--dataset": str(dataset), "--order": "T2,0", "--continual-pick": "best", "--continual-carry": "merge",
        "--continual-replay": "2", "--continual-update": "lora_rank=2,learning_rate=1e-4",
        "--retention-lambda": "0.5",
    }  # fmt: skip
    result = invoke("--continual", *[part for pair in args.items() for part in pair])
    assert result.exit_code == 0, result.output
    config = coordinator.manager.created[0].config
    assert (config.mode, config.order, config.continual_pick, config.continual_carry) == (
        "continual",
        ["T2", "0"],
        "best",
        "merge",
    )
    assert config.continual_replay == 2 and config.retention_lambda == 0.5
    assert config.continual_update is not None and config.continual_update.fields_set() == {
        "lora_rank": 2, "learning_rate": 1e-4
    }  # fmt: skip


def test_the_held_out_dataset_option_sends_held_out_passages(coordinator, tmp_path):
    heldout = write(tmp_path / "heldout.json", json.dumps([PASSAGE]))
    assert invoke("--heldout-dataset", str(heldout)).exit_code == 0
    assert without_ids(coordinator.sent["heldout_passages"]) == [PASSAGE]


def test_without_a_config_the_options_defaults_are_the_coordinators(coordinator):
    assert invoke().exit_code == 0
    sent = coordinator.sent
    assert sent["dataset"] == "demo" and sent["teachers"] == [] and sent["limit"] is None
    # fields whose default is None are not sent (the coordinator's default either way)
    assert sent["config"] == RunConfig().model_dump(
        exclude={"policy_directive", "order", "continual_update", "heldout_directive"}
    )


@pytest.mark.parametrize("field", ["conditions_directive", "self_edit_directive", "reward_metric"])
def test_a_choice_option_takes_exactly_the_coordinators_values(coordinator, field):
    option = "--" + field.replace("_", "-")
    for value in get_args(RunConfig.model_fields[field].annotation):
        assert invoke(option, value).exit_code == 0
        assert coordinator.requests.pop()[2]["config"][field] == value
    refused = invoke(option, "nonsense")
    assert refused.exit_code == 2 and "nonsense" in refused.output and coordinator.requests == []


@pytest.mark.parametrize(
    ("spec", "says"),
    [("t:rewrite:x=f.json", "completion index 'x' is not a number"), ("t::=f.json", "expected NAME=FILE"),
     ("t:a:1:2=f.json", "expected NAME=FILE")],
)  # fmt: skip
def test_a_bad_teacher_spec_says_what_is_expected(coordinator, spec, says):
    result = invoke("--teacher", spec, "--heldout", "1")
    assert result.exit_code == 2 and says in result.stderr and coordinator.requests == []


def test_a_teachers_format_and_index_are_sent_as_given(tmp_path):
    path = write(tmp_path / "t.json", json.dumps(TEACHER_FILE))
    teacher = cli.read_teacher(f"gpt4_1:self-qa:1={path}")
    assert TeacherImport(**teacher).model_dump(exclude={"passages"}) == {
        "name": "gpt4_1", "format": "self-qa", "completion_index": 1
    }  # fmt: skip


@pytest.mark.parametrize("text", ["epochs=2;epochs=3", "epochs", "lr=x"])
def test_a_bad_policy_directive_is_refused(coordinator, text):
    result = invoke("--policy-directive", text)
    assert result.exit_code == 2 and "--policy-directive:" in result.stderr and coordinator.requests == []


def test_read_config_reads_json_in_a_yaml_named_file(tmp_path):
    assert read_config(write(tmp_path / "run.yaml", '{"dataset": "demo"}')) == {"dataset": "demo"}


def test_the_docs_example_config_is_a_valid_run(coordinator, tmp_path):
    page = Path(__file__).resolve().parents[2] / "docs" / "getting-started" / "cli.md"
    example = re.search(r"```yaml\n(# run\.yaml:.*?)```", page.read_text(encoding="utf-8"), re.DOTALL)
    assert example is not None
    result = invoke("--config", str(write(tmp_path / "run.yaml", example[1])), "--rounds", "2")
    assert result.exit_code == 0, result.output
    request = coordinator.manager.created[0]
    assert request.config.rounds == 2 and request.config.policy_directive.epochs == 3
    assert request.config.heldout_format == "self-qa" and request.limit == 6
