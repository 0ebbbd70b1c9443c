"""The body `seal-lab run` sends to POST /v1/runs: a config file holding that same body (JSON or YAML), with
the options given on the command line over it; the run's settings as options, made from `RunConfig`'s fields
(name, type, default, help from the field's description); and the small option languages (directives,
teacher specs)."""

from __future__ import annotations

import copy
import inspect
import json
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar, get_args, get_origin

import typer
import yaml
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from seal_lab.errors import InvalidArgument
from seal_lab.formats.strategies import read_strategy_file

from ..run.schemas import RunConfig, annotation_members
from .api_client import CoordinatorError

#: `seal-lab run`'s options that set a field of `config` (RunConfig), under the field's own name: one per
#: field, generated (`config_options`), so a new field is an option without a change here.
CONFIG_OPTIONS = tuple(RunConfig.model_fields)

#: Where each option of `seal-lab run` lands in the request body.
RUN_BODY_PATHS: dict[str, tuple[str, ...]] = {
    "name": ("name",),
    "limit": ("limit",),
    "dataset": ("passages",),  # --dataset FILE: the file's passages
    "heldout_dataset": ("heldout_passages",),
    "teacher": ("teachers",),  # --teacher NAME[:FORMAT[:INDEX]]=FILE, repeated
    **{option: ("config", option) for option in CONFIG_OPTIONS},
}

#: Request fields no option sets, and why; a config file (`--config`) sets them like any other.
CONFIG_FILE_ONLY = {
    "dataset": "the built-in set's name: `run` sends `demo` when neither --dataset nor the file gives passages",
}


def read_config(path: Path) -> dict[str, Any]:
    """A run's request body from a file: JSON (`.json`) or YAML (anything else; YAML reads JSON too).
    The coordinator validates the fields; here only the file's shape is checked."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CoordinatorError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CoordinatorError(f"{path}: cannot read it ({type(exc).__name__})") from None
    if path.suffix.lower() == ".json":
        try:
            body = json.loads(text)
        except json.JSONDecodeError as exc:
            raise CoordinatorError(
                f"{path}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})"
            ) from None
    else:
        try:
            body = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise CoordinatorError(f"{path}: not valid YAML ({_yaml_problem(exc)})") from None
    if not isinstance(body, dict):
        found = "nothing" if body is None else f"a {type(body).__name__}"
        raise CoordinatorError(
            f"{path}: expected a mapping of the run's fields (the body of POST /v1/runs), found {found}"
        )
    if not isinstance(body.get("config", {}), dict):
        raise CoordinatorError(f"{path}: `config` must be a mapping of run settings")
    try:  # YAML has dates and .nan, JSON has neither: refuse them here, not as a crash while sending
        json.dumps(body, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise CoordinatorError(f"{path}: {exc} (write such values as strings)") from None
    return body


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """One line: where and what (PyYAML's own message spans several lines and quotes the input)."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or type(exc).__name__
    return f"line {mark.line + 1}, column {mark.column + 1}: {problem}" if mark else problem


def merge_options(body: dict[str, Any], options: dict[str, Any]) -> dict[str, Any]:
    """`body` (a config file's, or empty) with each option's value at its place (RUN_BODY_PATHS)."""
    merged = copy.deepcopy(body)
    for option, value in options.items():
        *parents, field = RUN_BODY_PATHS[option]
        target = merged
        for parent in parents:
            target = target.setdefault(parent, {})
        target[field] = value
    return merged


def _fields(text: str, option: str, model: type[BaseModel]) -> dict[str, float]:
    """'epochs=8,learning_rate=1e-3' -> {"epochs": 8, "learning_rate": 0.001}: a whole number stays an integer
    unless `model`'s field is a float. The coordinator judges the names and values."""
    fields: dict[str, float] = {}
    for pair in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = pair.partition("=")
        key = key.strip()
        try:
            number = float(value)
        except ValueError:
            raise CoordinatorError(f"{option}: {pair!r} is not FIELD=NUMBER") from None
        if not sep or not key:
            raise CoordinatorError(f"{option}: {pair!r} is not FIELD=NUMBER")
        field = model.model_fields.get(key)
        is_float = field is not None and float in annotation_members(field.annotation)
        fields[key] = int(number) if number.is_integer() and not is_float else number
    return fields


def parse_fields(text: str, option: str, model: type[BaseModel]) -> dict[str, float] | None:
    """'epochs=3,lora_rank=8' -> some fields of a `model` (its others keep their defaults); "" -> None (not
    sent: the coordinator's default)."""
    if ";" in text:
        raise CoordinatorError(f"{option}: one FIELD=NUMBER,... set, not a list")
    return _fields(text, option, model) or None


def parse_field_list(text: str, option: str, model: type[BaseModel]) -> list[dict[str, float]]:
    """'epochs=2;epochs=8,learning_rate=1e-3' -> [{"epochs": 2}, {"epochs": 8, "learning_rate": 0.001}]."""
    return [_fields(chunk, option, model) for chunk in filter(None, (c.strip() for c in text.split(";")))]


def _comma_list(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def _read_files(text: str) -> list[str]:
    """Comma-separated paths -> the files' texts."""
    paths = _comma_list(text)
    texts = []
    for path in paths:
        try:
            texts.append(read_strategy_file(Path(path)))
        except InvalidArgument as exc:
            raise CoordinatorError(exc.message) from None
    return texts


def _as_typed(value: Any) -> Any:
    return value


@dataclass(frozen=True)
class ConfigOption:
    """One option of `seal-lab run` made from one field of RunConfig."""

    field: str
    #: What the command line parses: the field's own type for a scalar, text in a small language otherwise.
    cli_type: Any
    #: Shown by --help; `to_value` of it is the field's default (or None: not sent, the coordinator's).
    default: Any
    help: str
    #: The parsed option -> the field's value in the request (None: not sent).
    to_value: Callable[[Any], Any]


def _scalar(annotation: Any) -> Any:
    """The type typer parses for a one-value field (`Annotated` metadata and `| None` dropped), or None."""
    members = [m for m in annotation_members(annotation) if m is not type(None)]
    if len(members) != 1:
        return None
    (member,) = members
    if get_origin(member) is Annotated:
        member = get_args(member)[0]
    choices = get_origin(member) is Literal and all(isinstance(v, str) for v in get_args(member))
    if member not in (int, float, str, bool) and not choices:
        return None
    return member | None if type(None) in annotation_members(annotation) else member


def _model(annotation: Any) -> type[BaseModel] | None:
    """The model a field holds (`Model` or `Model | None`: an empty option is not sent either way), or None."""
    members = [m for m in annotation_members(annotation) if m is not type(None)]
    if len(members) == 1:
        annotation = members[0]
    return annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None


def _option(owner: type[BaseModel], name: str, info: FieldInfo) -> ConfigOption:
    described = (info.description or "").rstrip(".")
    flag = "--" + name.replace("_", "-")
    annotation, args = info.annotation, get_args(info.annotation)
    default = info.get_default(call_default_factory=True)
    if (info.json_schema_extra or {}).get("cli") == "files":  # text sent, paths typed
        return ConfigOption(name, str, "", f"{described} (comma-separated paths)", _read_files)
    if (info.json_schema_extra or {}).get("cli") == "list":  # names or numbers, as text; empty: not sent
        return ConfigOption(
            name, str, "", f"{described} (comma-separated)", lambda text: _comma_list(text) or None
        )
    if (scalar := _scalar(annotation)) is not None:
        return ConfigOption(name, scalar, default, described, _as_typed)
    if get_origin(annotation) is list and len(args) == 1 and _scalar(args[0]) is not None:
        return ConfigOption(
            name, str, ",".join(map(str, default)), f"{described} (comma-separated)", _comma_list
        )
    if (model := _model(annotation)) is not None:
        fields = ", ".join(model.model_fields)
        shape = f"FIELD=NUMBER,... with FIELD among {fields}; fields left out keep their defaults"
        return ConfigOption(
            name, str, "", f"{described}: {shape}", partial(parse_fields, option=flag, model=model)
        )
    if get_origin(annotation) is list and len(args) == 1 and (model := _model(args[0])) is not None:
        if default:
            raise TypeError(
                f"{owner.__name__}.{name}: a list of models with a default has no option form yet"
            )
        fields = ", ".join(model.model_fields)
        shape = f"FIELD=NUMBER,... per entry, entries separated by ';', FIELD among {fields}"
        return ConfigOption(
            name, str, "", f"{described}: {shape}", partial(parse_field_list, option=flag, model=model)
        )
    raise TypeError(
        f"{owner.__name__}.{name}: no command-line form for {annotation!r}; give one in runbody._option"
    )


def config_options(model: type[BaseModel] = RunConfig) -> dict[str, ConfigOption]:
    """Every field of `model` as an option of `seal-lab run`, by field name, in the model's order."""
    return {name: _option(model, name, info) for name, info in model.model_fields.items()}


#: RunConfig's fields as options; `seal-lab run --help` lists them in this panel.
RUN_CONFIG_OPTIONS = config_options()
CONFIG_PANEL = "Run settings (`config` of POST /v1/runs)"

Command = TypeVar("Command", bound=Callable[..., Any])


def with_config_options(
    options: dict[str, ConfigOption] = RUN_CONFIG_OPTIONS, panel: str = CONFIG_PANEL
) -> Callable[[Command], Command]:
    """A typer command whose `**config` becomes one keyword option per entry of `options`; the command is
    called with their typed values in `config` (`config_value` turns each into the request's value)."""

    def add(command: Command) -> Command:
        signature = inspect.signature(command, eval_str=True)
        kept = [p for p in signature.parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
        generated = [
            inspect.Parameter(
                option.field,
                inspect.Parameter.KEYWORD_ONLY,
                default=option.default,
                annotation=Annotated[option.cli_type, typer.Option(help=option.help, rich_help_panel=panel)],
            )
            for option in options.values()
        ]
        command.__signature__ = signature.replace(parameters=[*kept, *generated])  # type: ignore[attr-defined]
        return command

    return add


def config_value(field: str, typed: Any) -> Any:
    """A RunConfig option's value as typed -> the field's value in the request (None: not sent)."""
    return RUN_CONFIG_OPTIONS[field].to_value(typed)


def parse_teacher_spec(spec: str) -> tuple[dict[str, Any], Path]:
    """NAME[:FORMAT[:INDEX]]=FILE -> the teacher's fields but its passages, and the file holding them. A
    name or format never holds ':' or '=', so the file's path may."""
    head, sep, path = spec.partition("=")
    name, *rest = head.split(":")
    if not sep or not name or not path or len(rest) > 2 or "" in rest:
        raise CoordinatorError(f"--teacher {spec!r}: expected NAME=FILE or NAME:FORMAT[:INDEX]=FILE")
    teacher: dict[str, Any] = {"name": name}
    if rest:
        teacher["format"] = rest[0]
    if len(rest) == 2:
        if not rest[1].isdigit():
            raise CoordinatorError(f"--teacher {spec!r}: the completion index {rest[1]!r} is not a number")
        teacher["completion_index"] = int(rest[1])
    return teacher, Path(path)
