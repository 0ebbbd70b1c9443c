"""Self-edit strategies as data: one owner for the strategy file format the generator runs and the coordinator
and the CLI check.

A strategy is a YAML file (`seal_lab/data/strategies/*.yaml` ship with the package):

- metadata: `name` (what a run's `formats` names), `description`, `source`, `citation`, `adapted` (what was
  changed for a small instruct model);
- `stages`: one or more Jinja2 templates, run in order. A stage sees `title` and `context` (the passage) and
  every earlier stage's output under that stage's name; each may set its own sampling (`temperature`, `top_p`,
  `max_new_tokens`; left out = the run's);
- `split`: how the last stage's output becomes training texts (`lines`, `blocks` (blank-line separated),
  `qa` (question/answer pairs), or `regex` (re.split on `pattern`)); numbering, bullets and framing lines
  ("Here are...") are dropped, and a text needs `min_words` words;
- `include_passage`: train on the passage too (true/false), or leave it to the run (absent);
- `example_output`: what the last stage is expected to write; `check` splits it, so a split rule that yields
  nothing is an error before any run.

Templates run in Jinja2's sandbox with StrictUndefined: a template can read only the variables above and a
misspelt one is an error, not an empty string. `strategy_sha256` is the hash of the parsed strategy: it is part
of every self-edit's stored record, so a changed strategy never reuses old results (the three original formats,
unchanged, record none, so their store keys stay what they were).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from functools import cache, lru_cache
from importlib import resources
from pathlib import Path
from typing import Annotated, Literal

import jinja2
import jinja2.meta
import yaml
from jinja2.sandbox import SandboxedEnvironment
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, model_validator

from seal_lab.errors import InvalidArgument
from seal_lab.formats.directive import strip_directive

#: A strategy file's size limit (a run sends the text; the generator parses it).
MAX_STRATEGY_CHARS = 16_000
MAX_STAGES = 4
MAX_TEMPLATE_CHARS = 6_000
#: What a strategy's (and a stage's) name looks like: it names jobs and records.
NAME_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,39}$"
#: Variables every stage sees.
PASSAGE_VARIABLES = ("title", "context")
_RESOURCE_DIR = "data/strategies"

Name = Annotated[str, StringConstraints(pattern=NAME_PATTERN)]

# A model's framing rather than content: "Here are the implications:", "Sure! ...", "Rewrite 2:".
_PREAMBLE = re.compile(
    r"^(?:(?:sure|certainly|of course|okay|ok)\b[\s,!.]|here (?:are|is)\b|below (?:are|is)\b)|:$", re.I
)
_BULLET = re.compile(r"^\s*(?:[-*•]|\d+[.):]|implication\s*\d*\s*[:.)-]|rewrite\s*\d*\s*[:.)-])\s*", re.I)
_SPLITS = {
    "blocks": re.compile(r"\n\s*\n"),
    # A pair spans two lines and stays together: blocks, or a new "Q:"/"Question 3." line.
    "qa": re.compile(r"\n\s*\n|\n(?=\s*(?:Q(?:uestion)?\s*\d*\s*[:.]))"),
}


class StageSampling(BaseModel):
    """A stage's sampling; a field left out is the run's."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    max_new_tokens: int | None = Field(None, ge=1, le=2048)


class Stage(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Name
    template: str = Field(min_length=1, max_length=MAX_TEMPLATE_CHARS)
    sampling: StageSampling = StageSampling()


class SplitRule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["lines", "blocks", "qa", "regex"] = "lines"
    #: For `regex`: re.split on it.
    pattern: str = Field("", max_length=500)
    min_words: int = Field(3, ge=1, le=100)

    @model_validator(mode="after")
    def _pattern(self) -> SplitRule:
        if self.kind == "regex":
            if not self.pattern:
                raise ValueError("split kind 'regex' needs a pattern")
            try:
                re.compile(self.pattern)
            except re.error as exc:
                raise ValueError(f"split pattern is not a regular expression: {exc}") from None
        elif self.pattern:
            raise ValueError(f"split kind {self.kind!r} takes no pattern (only 'regex' does)")
        return self


class Strategy(BaseModel):
    """One self-edit strategy (the file format above)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Name
    description: str = Field(min_length=1, max_length=1000)
    source: str = Field(min_length=1, max_length=1000)
    citation: str = Field("", max_length=1000)
    adapted: str = Field("", max_length=2000, description="what was changed for a small instruct model")
    stages: list[Stage] = Field(min_length=1, max_length=MAX_STAGES)
    split: SplitRule = SplitRule()
    include_passage: bool | None = None
    example_output: str = Field(min_length=1, max_length=4000)

    @model_validator(mode="after")
    def _stage_names(self) -> Strategy:
        names = [stage.name for stage in self.stages]
        if len(set(names)) != len(names):
            raise ValueError(f"stage names repeat: {names}")
        clash = set(names) & set(PASSAGE_VARIABLES)
        if clash:
            raise ValueError(f"a stage may not be named {sorted(clash)}: the passage's variables are")
        return self

    @property
    def sha256(self) -> str:
        canonical = json.dumps(self.model_dump(mode="json"), sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()

    @property
    def key_hash(self) -> str:
        """What goes in a self-edit's record: the hash, or "" for an original format left as it was."""
        return "" if ORIGINAL_FORMATS.get(self.name) == self.sha256 else self.sha256

    def render(self, index: int, title: str, context: str, earlier: dict[str, str]) -> str:
        """Stage `index`'s prompt for a passage, given the earlier stages' outputs by stage name."""
        return _template(self.stages[index].template).render(title=title, context=context, **earlier)

    def training_texts(self, output: str) -> list[str]:
        """Training texts in the last stage's output: one per item, numbering and bullets removed, framing
        lines and the directive dropped."""
        text = strip_directive(output).strip()
        if self.split.kind == "lines":
            chunks = text.splitlines()
        elif self.split.kind == "regex":
            chunks = re.split(self.split.pattern, text)
        else:
            chunks = _SPLITS[self.split.kind].split(text)
        items = [_BULLET.sub("", chunk or "").strip() for chunk in chunks]
        return [
            item for item in items if len(item.split()) >= self.split.min_words and not _PREAMBLE.search(item)
        ]


#: The three formats seal-lab had before strategies were files, by name -> the hash of their file as shipped
#: then. Their self-edits' records carry no hash, so their store keys are what they were; edit one of those
#: files and its hash changes, and its records carry the new one (tests pin these).
ORIGINAL_FORMATS = {
    "implications": "d3164821a9224a3231ce71560aa68f8f6d4ad9cbfaa10e3aa83142f1686180a2",
    "rewrite": "1690121aad3d20a6063033c3c10bc0cee3913b654a80abeed3e7501e316c20e5",
    "self-qa": "82cc5dd8b1847e8819d0d86eae58d5f4ffab68fc5a28c3085a4588bbac3ba691",
}

_ENV = SandboxedEnvironment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True, autoescape=False)


@lru_cache(maxsize=256)  # templates come in requests too: bounded
def _template(text: str) -> jinja2.Template:
    return _ENV.from_string(text)


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a strategy file, at a line (1-based; 0 = the file as a whole)."""

    line: int
    message: str

    def where(self, origin: str) -> str:
        return f"{origin}:{self.line}: {self.message}" if self.line else f"{origin}: {self.message}"


class StrategyError(InvalidArgument):
    """A strategy file that cannot be used, with every problem found and where."""

    def __init__(self, origin: str, problems: list[Problem]) -> None:
        self.origin = origin
        self.problems = problems
        super().__init__("; ".join(p.where(origin) for p in problems))


def _node_line(root: yaml.Node | None, path: tuple[str | int, ...]) -> int:
    """The 1-based line of the YAML node at a pydantic error's location (as deep as the path goes)."""
    node, line = root, 0
    for part in path:
        if isinstance(node, yaml.MappingNode):
            found = next((v for k, v in node.value if k.value == part), None)
            if found is None:
                break
            line = next(k for k, v in node.value if v is found).start_mark.line + 1
            node = found
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            break
    return line or (root.start_mark.line + 1 if root is not None else 0)


def _template_line(root: yaml.Node | None, stage: int, line_in_template: int) -> int:
    """The file line of line `line_in_template` of stage `stage`'s template (a block scalar starts a line
    below its `|`)."""
    base = _node_line(root, ("stages", stage, "template"))
    node = root
    for part in ("stages", stage, "template"):
        if isinstance(node, yaml.MappingNode):
            node = next((v for k, v in node.value if k.value == part), None)
        elif isinstance(node, yaml.SequenceNode):
            node = node.value[part] if isinstance(part, int) and part < len(node.value) else None
    block = isinstance(node, yaml.ScalarNode) and node.style in ("|", ">")
    return base + line_in_template if block else base


def parse_strategy(text: str, origin: str = "<strategy>") -> Strategy:
    """A strategy from its YAML text; StrategyError names the file's lines that are wrong.

    Checked here: YAML, the schema, template syntax, variables (only the passage's and earlier stages').
    """
    if len(text) > MAX_STRATEGY_CHARS:
        raise StrategyError(
            origin, [Problem(0, f"{len(text):,} characters; the limit is {MAX_STRATEGY_CHARS:,}")]
        )
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else 0
        raise StrategyError(
            origin, [Problem(line, f"not YAML: {getattr(exc, 'problem', None) or exc}")]
        ) from None
    if not isinstance(data, dict):
        raise StrategyError(origin, [Problem(1, "expected a mapping (name:, stages:, split:, ...)")])
    try:
        strategy = Strategy.model_validate(data)
    except ValidationError as exc:
        problems = [
            Problem(
                _node_line(root, tuple(error["loc"])),
                f"{'.'.join(map(str, error['loc'])) or 'strategy'}: {error['msg']}",
            )
            for error in exc.errors()
        ]
        raise StrategyError(origin, problems) from None
    problems = []
    known = set(PASSAGE_VARIABLES)
    for index, stage in enumerate(strategy.stages):
        try:
            ast = _ENV.parse(stage.template)
        except jinja2.TemplateSyntaxError as exc:
            problems.append(
                Problem(
                    _template_line(root, index, exc.lineno),
                    f"stage {stage.name!r}: template syntax: {exc.message}",
                )
            )
        else:
            for name in sorted(jinja2.meta.find_undeclared_variables(ast) - known):
                offset = next(
                    (
                        n
                        for n, line in enumerate(stage.template.splitlines(), 1)
                        if re.search(rf"\b{name}\b", line)
                    ),
                    1,
                )
                later = " (a later stage's output)" if name in {s.name for s in strategy.stages} else ""
                problems.append(
                    Problem(
                        _template_line(root, index, offset),
                        f"stage {stage.name!r}: unknown variable {name!r}{later}; it may use "
                        f"{', '.join(sorted(known))}",
                    )
                )
        known.add(stage.name)
    if problems:
        raise StrategyError(origin, problems)
    return strategy


def check_strategy(text: str, origin: str, title: str, context: str) -> Strategy:
    """`parse_strategy`, then every stage rendered on a sample passage (earlier stages' outputs stood in by
    `example_output`) and the split rule tried on `example_output`: it must give at least one text."""
    strategy = parse_strategy(text, origin)
    root = yaml.compose(text, Loader=yaml.SafeLoader)
    earlier: dict[str, str] = {}
    for index, stage in enumerate(strategy.stages):
        try:
            strategy.render(index, title, context, earlier)
        except jinja2.TemplateError as exc:
            line = _template_line(root, index, getattr(exc, "lineno", None) or 1)
            raise StrategyError(origin, [Problem(line, f"stage {stage.name!r}: {exc}")]) from None
        earlier[stage.name] = strategy.example_output
    if not strategy.training_texts(strategy.example_output):
        raise StrategyError(
            origin,
            [
                Problem(
                    _node_line(root, ("split",)) or _node_line(root, ("example_output",)),
                    f"the split rule ({strategy.split.kind}, min_words {strategy.split.min_words}) finds no "
                    "training text in example_output",
                )
            ],
        )
    return strategy


@cache
def builtin_texts() -> dict[str, str]:
    """The strategies that ship with the package: name -> file text (the file is named after the strategy)."""
    folder = resources.files("seal_lab").joinpath(_RESOURCE_DIR)
    texts = {}
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".yaml"):
            texts[entry.name.removesuffix(".yaml")] = entry.read_text(encoding="utf-8")
    return texts


@cache
def builtin(name: str) -> Strategy:
    texts = builtin_texts()
    if name not in texts:
        raise InvalidArgument(
            f"unknown self-edit format {name!r} (no such built-in strategy); built in: {', '.join(texts)}"
        )
    strategy = parse_strategy(texts[name], f"{name}.yaml")
    if strategy.name != name:
        raise InvalidArgument(f"built-in strategy file {name}.yaml names itself {strategy.name!r}")
    return strategy


def builtin_names() -> list[str]:
    return list(builtin_texts())


def resolve(name: str, text: str = "") -> Strategy:
    """The strategy a request names: its own text when it sent one (whose name must be `name`), else the
    built-in of that name."""
    if not text:
        return builtin(name)
    strategy = parse_strategy(text, f"strategy {name!r}")
    if strategy.name != name:
        raise InvalidArgument(
            f"the strategy sent is named {strategy.name!r}, not {name!r} as the request says"
        )
    return strategy


def read_strategy_file(path: Path) -> str:
    """A strategy file's text (the size checked before it is read whole)."""
    try:
        size = path.stat().st_size
        if size > MAX_STRATEGY_CHARS * 4:
            raise StrategyError(
                str(path), [Problem(0, f"{size:,} bytes; the limit is {MAX_STRATEGY_CHARS:,} characters")]
            )
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidArgument(f"cannot read strategy file {path}: {exc}") from None
