"""The body `seal-lab run` sends to POST /v1/runs: a config file holding that same body (JSON or YAML), with
the options given on the command line over it, and the small option languages (directives, teacher specs)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import yaml

from .api_client import CoordinatorError

#: `seal-lab run`'s options that set a field of `config` (RunConfig), under the field's own name.
CONFIG_OPTIONS = (
    "k",
    "formats",
    "temperature",
    "top_p",
    "max_new_tokens",
    "seed",
    "include_passage",
    "reward_metric",
    "reward_seeds",
    "eval_max_new_tokens",
    "policy_adapter_key",
    "retention",
    "retention_questions",
    "retention_heldout",
    "rounds",
    "heldout",
    "heldout_format",
    "conditions_directive",
    "policy_directive",
    "specificity_control",
    "min_reward",
    "directive_search",
)

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


def _parse_directive(text: str, option: str) -> dict[str, float]:
    """'epochs=8,learning_rate=1e-3' -> {"epochs": 8, "learning_rate": 0.001} (integers stay integers)."""
    directive: dict[str, float] = {}
    for pair in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = pair.partition("=")
        try:
            directive[key.strip()] = float(value)
        except ValueError:
            raise CoordinatorError(f"{option}: {pair!r} is not FIELD=NUMBER") from None
        if not sep or not key.strip():
            raise CoordinatorError(f"{option}: {pair!r} is not FIELD=NUMBER")
    return {k: int(v) if v.is_integer() and k != "learning_rate" else v for k, v in directive.items()}


def parse_directive_search(text: str) -> list[dict[str, float]]:
    """'epochs=2;epochs=8,learning_rate=1e-3' -> [{"epochs": 2}, {"epochs": 8, "learning_rate": 0.001}]."""
    return [
        _parse_directive(chunk, "--directive-search")
        for chunk in filter(None, (c.strip() for c in text.split(";")))
    ]


def parse_policy_directive(text: str) -> dict[str, float] | None:
    """'epochs=3,lora_rank=8' -> the policy update's directive (its other fields keep their defaults);
    "" -> None (not sent: the coordinator's default)."""
    if ";" in text:
        raise CoordinatorError("--policy-directive: one directive (FIELD=NUMBER,...), not a list")
    return _parse_directive(text, "--policy-directive") or None


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
