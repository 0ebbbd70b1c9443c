"""HTTP request and response models of the coordinator API."""

from __future__ import annotations

import types
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    StringConstraints,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from seal_lab.errors import InvalidArgument
from seal_lab.formats.passages import retention_set_size, unencodable_text
from seal_lab.formats.strategies import MAX_STRATEGY_CHARS, StrategyError, parse_strategy
from seal_lab.store import MAX_KEY_CHARS, validate_key

from .limits import (
    FORMAT_NAME_PATTERN,
    MAX_PASSAGES_PER_REQUEST,
    MAX_RUN_NAME_CHARS,
    MAX_TEACHER_PASSAGES,
)
from .records import RunServices
from .result_schemas import RunResults

#: "paused": waiting for the object store to come back (the run goes on by itself). "cancelling": cancel was
#: asked for (POST /v1/runs/{id}/cancel) and the run is stopping: its calls are being cancelled, or (a continual
#: run) each stream finishes its step in flight, whose records are kept. "cancelled": stopped for good, nothing
#: of it runs any more; no coordinator resumes it.
RunStatusName = Literal[
    "queued", "running", "paused", "cancelling", "succeeded", "completed_with_errors", "failed", "cancelled"
]
#: `judge` (SEAL's own judge) only with an evaluator that has one: the run fails at its start otherwise.
RewardMetric = Literal["f1", "exact_match", "contains", "token_recall", "gold_logprob", "judge"]
TEACHER_NAME_PATTERN = r"^[a-z0-9][a-z0-9_.-]{0,39}$"
FormatName = Annotated[str, StringConstraints(pattern=FORMAT_NAME_PATTERN)]


def epoch_seconds(value: Any) -> Any:
    """An RFC 3339 time (what the API sends) back to seconds since the epoch (what the records keep)."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.timestamp() if isinstance(value, datetime) else value


def _rfc3339(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, tz=UTC)


#: A time: seconds since the epoch in memory and in the store's records, RFC 3339 in UTC in every API response
#: (`2026-11-29T14:05:09.25Z`): converted here, at the boundary.
Timestamp = Annotated[
    float,
    BeforeValidator(epoch_seconds),
    PlainSerializer(_rfc3339, return_type=datetime, when_used="json"),
    Field(examples=["2026-11-29T14:05:09.250000Z"]),
]


def annotation_members(annotation: Any) -> tuple[Any, ...]:
    """The types a field's annotation allows: `int | None` -> (int, NoneType); `int` -> (int,)."""
    if get_origin(annotation) in (Union, types.UnionType):
        return get_args(annotation)
    return (annotation,)


def _unencodable_in(value: Any) -> str | None:
    """Where in a field's value (a string, or the lists and dicts of a free-form field) a string cannot be
    encoded as UTF-8, and why; None if nowhere. Request models inside it have checked their own fields. A
    loop, not recursion: the JSON may be nested deep."""
    pending: list[tuple[str, Any]] = [("", value)]
    while pending:
        path, item = pending.pop()
        if isinstance(item, str):
            if (problem := unencodable_text(item)) is not None:
                return f"{path or 'the text'} {problem}"
        elif isinstance(item, dict):
            for key, inner in item.items():
                if isinstance(key, str) and (problem := unencodable_text(key)) is not None:
                    return f"a key in {path or 'the object'} {problem}"
                pending.append((f"{path}.{key}" if path else str(key), inner))
        elif isinstance(item, list | tuple):
            pending.extend((f"{path}[{i}]", inner) for i, inner in enumerate(item))
    return None


class RequestModel(BaseModel):
    """Every request body's model. A field not declared is refused, and a number must be finite (JSON has no
    NaN, but Python's json and some clients send it). Two checks on every field of every subclass, for what
    pydantic lets through:

    - text that cannot be encoded as UTF-8 (a lone surrogate, which JSON's `"\\ud800"` gives): it would fail
      where the text is hashed, stored or tokenized, a 500 in the middle of creating a run. Pydantic refuses
      it only in a string it measures (`max_length`, `pattern`); this checks every string, and searches the
      free-form fields (the passages) through, after the field's own checks (a list's length first).
    - `true`/`false` where a number is meant, before the field's validation: lax mode reads `true` as 1. Lax
      mode stays otherwise: YAML config files give `1e-3` as a string, and a client's `2.0` is the integer
      it means.
    """

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    @field_validator("*", mode="after")
    @classmethod
    def _encodable_text(cls, value: Any) -> Any:
        if (problem := _unencodable_in(value)) is not None:
            raise PydanticCustomError("string_unicode", "{problem}", {"problem": problem})
        return value

    @field_validator("*", mode="before")
    @classmethod
    def _no_boolean_numbers(cls, value: Any, info: ValidationInfo) -> Any:
        if isinstance(value, bool) and info.field_name is not None:
            allowed = annotation_members(cls.model_fields[info.field_name].annotation)
            if bool not in allowed and (int in allowed or float in allowed):
                raise PydanticCustomError("number_type", "Input should be a number, not true or false")
        return value


class DirectiveOverride(RequestModel):
    """Some directive fields; the rest come from the directive it is applied to."""

    epochs: int | None = Field(None, ge=1)
    learning_rate: float | None = Field(None, gt=0.0)
    lora_rank: int | None = Field(None, ge=1)
    lora_alpha: int | None = Field(None, ge=1)
    batch_size: int | None = Field(None, ge=1)
    max_length: int | None = Field(None, ge=1)
    steps: int | None = Field(None, ge=0, description="training budget in steps; 0 = epochs")
    tokens: int | None = Field(
        None, ge=0, description="training budget in tokens; set (> 0), it overrides steps and epochs; 0 = off"
    )

    def fields_set(self) -> dict[str, float | int]:
        return {k: v for k, v in self.model_dump().items() if v is not None}

    @model_validator(mode="after")
    def _not_empty(self) -> DirectiveOverride:
        if not self.fields_set():
            raise ValueError("a directive override needs at least one field")
        return self


class PolicyDirective(RequestModel):
    """How the generator's policy adapter is fine-tuned on the winning self-edits (ReST-EM's SFT step)."""

    epochs: int = Field(2, ge=1)
    learning_rate: float = Field(1e-3, gt=0.0)
    lora_rank: int = Field(16, ge=1)
    lora_alpha: int = Field(32, ge=1)
    batch_size: int = Field(1, ge=1)
    max_length: int = Field(
        1024, ge=32, description="prompt + self-edit tokens; prompts are cut from the left"
    )
    steps: int = Field(0, ge=0, description="a budget in optimizer steps instead of epochs; 0 = epochs")


#: What a stored run spec that lacks these fields ran with. A spec holds every field of the version that wrote
#: it (`RunConfig.model_dump`), so a missing one predates the field, whose default then changed the behaviour:
#: the run resumes, and its results read back, as it ran.
SPEC_FIELDS_BEFORE: dict[str, Any] = {"self_edit_directive": "generated", "question_topic": True}


class RunConfig(RequestModel):
    """How one round of the inner loop runs. Every field has a documented default."""

    k: int = Field(3, ge=1, le=16, description="self-edits per passage and format")
    formats: list[FormatName] = Field(
        ["implications"], min_length=1, max_length=8, description="self-edit formats"
    )
    temperature: float = Field(0.7, ge=0.0, le=2.0, description="sampling temperature of the self-edits")
    top_p: float = Field(0.95, gt=0.0, le=1.0, description="nucleus sampling of the self-edits")
    max_new_tokens: int = Field(192, ge=16, le=2048, description="length of one self-edit")
    seed: int = Field(
        0, ge=0, le=2**31 - 1, description="base seed of the sampling, the training and the held-out split"
    )
    include_passage: bool = Field(True, description="train on the passage too (SEAL's passage + self-edits)")
    reward_metric: RewardMetric = Field("f1", description="score used for the reward and the best self-edit")
    reward_seeds: int = Field(
        1,
        ge=1,
        le=8,
        description="train every training self-edit with this many seeds and average its reward (the report "
        "splits the reward's variance into the self-edit's share and seed noise)",
    )
    eval_max_new_tokens: int = Field(32, ge=1, le=256, description="length of an answer to a question")
    question_topic: bool = Field(
        False,
        description="ask a passage's questions with SEAL's \"Topic: {title}\" line above the question (SEAL's "
        "text: the benchmarks that reproduce SEAL's experiments set it); off, the question alone, which "
        "scored seal-lab's adapters higher on two sets of invented passages (issue 28)",
    )
    policy_adapter_key: str = Field(
        "",
        max_length=MAX_KEY_CHARS,
        description="generator policy adapter (ReST-EM), a key of the store; empty = base model",
    )
    retention: bool = Field(
        True, description="also score every adapter on general questions the base model knows (forgetting)"
    )
    retention_questions: int = Field(
        0,
        ge=0,
        description="score only this many questions of the retention set, evenly spaced over it (0 = all "
        "of them); each question costs one answer per adapter",
    )
    retention_heldout: int = Field(
        0,
        ge=0,
        description="score the retention set for only the first N held-out passages of each condition "
        "(0 = all of them); 64 questions per adapter cost several times the passage's own evaluation",
    )
    rounds: int = Field(
        0,
        ge=0,
        le=10,
        description="ReST-EM rounds: after each inner loop the generator's policy is fine-tuned on the winning "
        "self-edits and used for the next round. 0 = one inner loop, no policy update",
    )
    heldout: int = Field(
        0,
        ge=0,
        description="hold out this many of `passages` (seeded shuffle) unless `heldout_passages` is given",
    )
    heldout_format: str = Field(
        "",
        pattern=f"^$|{FORMAT_NAME_PATTERN}",
        description="format of the held-out self-edits; empty = the first of `formats`",
    )
    self_edit_directive: Literal["default", "generated"] = Field(
        "default",
        description="the training passages' self-edits train with the trainer's default directive (SEAL's "
        "knowledge incorporation: the model writes the data, the recipe is fixed) or with the directive each "
        "self-edit wrote (SEAL's few-shot setting: the policy learns its hyperparameters too; on invented "
        "passages the small model's own directives learned less, issue 28). Continual steps follow it too",
    )
    conditions_directive: Literal["default", "generated"] = Field(
        "default",
        description="held-out conditions train with the trainer's default directive (compares the data only, "
        "as SEAL's table does) or with each self-edit's own directive",
    )
    heldout_directive: DirectiveOverride | None = Field(
        None,
        description="these directive fields override the directive of every held-out condition's training (the "
        "trainer's default, or each self-edit's own with `conditions_directive: generated`), e.g. `{tokens: "
        "1900}` so that every condition trains on the same number of tokens; refused when outside the "
        "trainer's limits",
    )
    policy_directive: PolicyDirective = Field(
        default_factory=PolicyDirective,
        description="how the policy update (each ReST-EM round) trains on the winning self-edits",
    )
    specificity_control: bool = Field(
        True,
        description="also score each held-out adapter on the next held-out passage's questions: a gain there "
        "is not knowledge of its own passage",
    )
    min_reward: float = Field(
        0.0, description="a passage's best self-edit wins only if its reward exceeds this"
    )
    directive_search: list[DirectiveOverride] = Field(
        [],
        max_length=8,
        description="also train every training self-edit with each of these directives and keep the best",
    )
    mode: Literal["standard", "continual"] = Field(
        "standard",
        description="standard: ReST-EM rounds and SEAL's held-out conditions, every adapter trained on the base "
        "model. continual: the passages as a stream (`order` or `orderings`), each one's chosen self-edit "
        "trained on the model the stream has so far, which becomes the model of the next step",
    )
    order: list[int | Annotated[str, StringConstraints(max_length=MAX_RUN_NAME_CHARS)]] | None = Field(
        None,
        max_length=MAX_PASSAGES_PER_REQUEST,
        description="continual: the stream's passages, by title or by index into `passages` (not given: every "
        "passage, in the order given, or `orderings` seeded shuffles of them)",
        json_schema_extra={"cli": "list"},
    )
    orderings: int = Field(
        0,
        ge=0,
        le=64,
        description="continual: this many seeded shuffles of the passages, each its own stream from the base "
        "model (0 = one stream, in `order` or the order given)",
    )
    continual_pick: Literal["first", "best"] = Field(
        "first",
        description="continual: which self-edit of a step is trained into the stream: the first (SEAL's "
        "continual experiment) or the best of the k by reward, each trained on the current model",
    )
    continual_carry: Literal["adapter", "merge"] = Field(
        "adapter",
        description="continual: how the model carries what it learned: one adapter trained on from step to step "
        "(SEAL's way), or each step's adapter merged into the weights and a fresh one trained on top",
    )
    continual_replay: int = Field(
        0,
        ge=0,
        le=64,
        description="continual, against forgetting: mix this many training examples from earlier steps' "
        "chosen self-edits into each step's training (seeded; 0 = off)",
    )
    continual_update: DirectiveOverride | None = Field(
        None,
        description="continual, against forgetting: a smaller update: these directive fields (a lower "
        "lora_rank, learning_rate, epochs...) override every step's directive (clamped to the trainer's limits)",
    )
    retention_lambda: float = Field(
        0.0,
        ge=0.0,
        le=100.0,
        description="against forgetting: a self-edit's reward becomes its gain minus this times its loss on the "
        "retention sample (base model's score minus the adapter's, floored at 0); the ReST-EM winners and a "
        "continual `best` pick use it. Needs `retention`. 0 = the gain alone",
    )
    strategy_files: list[Annotated[str, StringConstraints(max_length=MAX_STRATEGY_CHARS)]] = Field(
        [],
        max_length=4,
        description="self-edit strategies as files (YAML, `seal-lab strategies check FILE`): each defines the "
        "strategy of its `name`, which `formats` or `heldout_format` then names (one named like a built-in "
        "replaces it in this run); the command line takes the files' paths",
        json_schema_extra={"cli": "files"},
    )

    @field_validator("policy_adapter_key")
    @classmethod
    def _store_key(cls, key: str) -> str:
        """The store's own key rules, at the door: a key that could never name an adapter is refused here."""
        if key:
            try:
                validate_key(key)
            except InvalidArgument as exc:
                raise ValueError(exc.message) from None
        return key

    @field_validator("strategy_files")
    @classmethod
    def _strategies_parse(cls, texts: list[str]) -> list[str]:
        names = []
        for index, text in enumerate(texts):
            try:
                names.append(parse_strategy(text, f"strategy_files[{index}]").name)
            except StrategyError as exc:
                raise ValueError(exc.message) from None
        if len(set(names)) != len(names):
            raise ValueError(f"strategy_files define a name twice: {names}")
        return texts

    @property
    def strategy_texts(self) -> dict[str, str]:
        """The strategies this run sends, by name (the built-ins are the generator's own)."""
        return {parse_strategy(text).name: text for text in self.strategy_files}

    def strategy_text(self, name: str) -> str:
        """What a request for strategy `name` sends: the file's text, or "" for a built-in."""
        return self.strategy_texts.get(name, "")

    @model_validator(mode="after")
    def _unique_formats(self) -> RunConfig:
        if len(set(self.formats)) != len(self.formats):
            raise ValueError("formats has duplicates")
        if self.retention_questions > retention_set_size():
            raise ValueError(
                f"retention_questions {self.retention_questions} is more than the retention set's "
                f"{retention_set_size()} questions"
            )
        if self.heldout_format and self.heldout_format not in self.formats:
            raise ValueError(f"heldout_format {self.heldout_format!r} is not one of formats {self.formats}")
        unused = sorted(set(self.strategy_texts) - {*self.formats, self.heldout_format})
        if unused:
            raise ValueError(f"strategy_files define {unused}, named in neither formats nor heldout_format")
        if self.retention_lambda and not self.retention:
            raise ValueError("retention_lambda weighs the retention loss: it needs retention on")
        self._continual_conflicts()
        return self

    def _continual_conflicts(self) -> None:
        """A continual run's settings together, and none of them on a standard run."""
        continual_only = {
            "order": self.order is not None,
            "orderings": self.orderings != 0,
            "continual_pick": self.continual_pick != "first",
            "continual_carry": self.continual_carry != "adapter",
            "continual_replay": self.continual_replay != 0,
            "continual_update": self.continual_update is not None,
        }
        if self.mode != "continual":
            named = [name for name, given in continual_only.items() if given]
            if named:
                raise ValueError(f"{', '.join(named)} only apply to mode 'continual'")
            return
        conflicts = {
            "rounds": self.rounds != 0,
            "heldout": self.heldout != 0,
            "heldout_directive": self.heldout_directive is not None,
            "directive_search": bool(self.directive_search),
            "reward_seeds": self.reward_seeds != 1,
            "policy_adapter_key": bool(self.policy_adapter_key),
            "formats (more than one)": len(self.formats) != 1,
        }
        named = [name for name, given in conflicts.items() if given]
        if named:
            raise ValueError(
                f"a continual run trains one stream, each step on the last: {', '.join(named)} cannot be set "
                "with mode 'continual'"
            )
        if self.order is not None and not self.order:
            raise ValueError(
                "order is empty: name the stream's passages (titles or indexes), or leave it out"
            )
        if self.order is not None and self.orderings:
            raise ValueError("give either order or orderings, not both")
        if self.continual_pick == "first" and self.retention_lambda:
            raise ValueError("retention_lambda chooses among self-edits: it needs continual_pick 'best'")

    @property
    def heldout_edit_format(self) -> str:
        return self.heldout_format or self.formats[0]


class TeacherImport(RequestModel):
    """Self-edits written by another model, in SEAL's format: per passage its `context` and `completions`."""

    name: str = Field(pattern=TEACHER_NAME_PATTERN, description="row name, e.g. gpt4_1")
    format: FormatName = Field("implications", description="how each completion is split into training texts")
    completion_index: int = Field(0, ge=0, description="which completion of each passage is trained on")
    passages: list[Any] = Field(
        min_length=1,
        max_length=MAX_TEACHER_PASSAGES,
        description="[{context, completions: [str, ...]}, ...]; matched to held-out passages by context",
    )


class RunCreate(RequestModel):
    name: str = Field("", max_length=MAX_RUN_NAME_CHARS)
    dataset: Literal["demo"] | None = Field(None, description="a built-in dataset instead of `passages`")
    # `max_length` stops validation at the count, before any record is looked at.
    passages: list[Any] | None = Field(
        None,
        max_length=MAX_PASSAGES_PER_REQUEST,
        description="SEAL/SQuAD format: [{title, context, questions: [{question, answer}]}]",
    )
    limit: int | None = Field(
        None,
        ge=1,
        le=MAX_PASSAGES_PER_REQUEST,
        description="use only the first N passages (all of `passages` still count against the limit)",
    )
    heldout_passages: list[Any] | None = Field(
        None,
        max_length=MAX_PASSAGES_PER_REQUEST,
        description="passages never used to train the policy (same format as `passages`)",
    )
    teachers: list[TeacherImport] = Field([], max_length=8, description="imported self-edits (condition 5)")
    config: RunConfig = Field(default_factory=RunConfig)

    @model_validator(mode="after")
    def _one_source(self) -> RunCreate:
        if (self.dataset is None) == (self.passages is None):
            raise ValueError("give exactly one of `dataset` or `passages`")
        if self.heldout_passages is not None and self.config.heldout:
            raise ValueError("give either `heldout_passages` or `config.heldout`, not both")
        if self.config.mode == "continual" and (self.heldout_passages is not None or self.teachers):
            raise ValueError("a continual run streams `passages`: heldout_passages and teachers do not apply")
        names = [t.name for t in self.teachers]
        if len(set(names)) != len(names):
            raise ValueError("teacher names must be unique")
        if self.teachers and self.heldout_passages is None and not self.config.heldout:
            raise ValueError(
                "teachers are compared on held-out passages: give `heldout_passages` or `config.heldout`"
            )
        return self


class RunCreated(BaseModel):
    id: str
    status: RunStatusName
    passages: int
    jobs_total: int


class RunEvent(BaseModel):
    seq: int = Field(
        description="the event's number in its run; the stream's `id:` (resume with Last-Event-ID)"
    )
    ts: Timestamp
    kind: Literal["status", "progress", "job", "retry", "error"]
    message: str
    passage_id: str = ""
    job: str = ""
    data: dict[str, Any] = Field(default_factory=dict)


class HeldoutHeadline(BaseModel):
    """The best held-out condition (the base model's row aside) by its mean gain."""

    label: str = Field(description="the condition's label (its name when it has none)")
    gain: float = Field(description="its mean gain over the base model, paired by passage")


class RunHeadline(BaseModel):
    """The numbers a finished run is known by, from its results (`summary`, `heldout`)."""

    metric: str = Field(description="the run's reward metric")
    gain: float | None = Field(
        None, description="round 0's mean gain of each passage's best self-edit over the base model"
    )
    best: float | None = Field(None, description="round 0's mean score of each passage's best self-edit")
    baseline: float | None = Field(None, description="round 0's mean score of the base model")
    heldout: HeldoutHeadline | None = Field(
        None, description="the best held-out condition; null without a held-out set"
    )

    @classmethod
    def of(cls, results: RunResults) -> RunHeadline:
        summary = results.summary
        scored = [
            (row.gain.mean, row.label or row.condition)
            for row in (results.heldout.conditions if results.heldout else [])
            if row.condition != "base" and row.gain is not None and row.gain.mean is not None
        ]
        top = max(scored, key=lambda pair: pair[0], default=None)  # the first of equals, as listed
        return cls(
            metric=summary.metric,
            gain=summary.mean_best_gain,
            best=summary.mean_best,
            baseline=summary.mean_baseline,
            heldout=HeldoutHeadline(label=top[1], gain=top[0]) if top is not None else None,
        )


class RunSummary(BaseModel):
    id: str
    name: str
    status: RunStatusName
    created_at: Timestamp
    updated_at: Timestamp
    passages: int
    jobs_total: int
    jobs_done: int
    jobs_failed: int
    retries: int
    current: str
    error: str
    round: int = 0
    rounds: int = 0
    policy_adapter_key: str = ""
    headline: RunHeadline | None = Field(
        None,
        description="a finished run's headline numbers (`GET /v1/runs` lists them without reading each "
        "run); null while it runs, for a run without results, and in summaries an older coordinator indexed",
    )


class RunPage(BaseModel):
    """One page of `GET /v1/runs`, newest first."""

    runs: list[RunSummary]
    next_page_token: str | None = Field(
        description="pass as `page_token` for the next page; null on the last page"
    )


class RunDetail(RunSummary):
    config: RunConfig
    services: RunServices
    recent_events: list[RunEvent]
    results: RunResults | None


class Health(BaseModel):
    status: str
    version: str
