"""A finished run's results: typed models from the builder (results/) to the manifest, the API
(`/v1/runs/{id}/results`), the report and the CLI, so the OpenAPI document says what a client reads, from the
top down to each passage, self-edit and trial, SEAL's conditions table, the planned comparisons and the rounds.

Permissive on purpose: every model keeps keys it does not name (a newer coordinator's), and fields a stored
result from an older one lacks are optional and stay absent in the response (not sent as null), so the
results read back exactly as they were stored (tests/fixtures/results holds earlier coordinators'). Fields
are declared in the order the builders write them, and a number keeps its JSON type (`Number`: an int stays
an int), so a run's results are the same JSON, key for key and byte for byte, as when they were dicts.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import ConfigDict, Field

from .records import (
    Answer,
    BestSelfEdit,
    DirectiveRecord,
    FailedRecord,
    Number,
    PolicyRecord,
    RunSplit,
    Scores,
    SelfEdit,
    TrainMetrics,
)
from .records import OpenRecord as _Stored


class Estimate(_Stored):
    """A mean over passages with its error bar; stderr and ci95 are null below two values."""

    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={"examples": [{"n": 8, "mean": 0.41, "stderr": 0.05, "ci95": [0.31, 0.51]}]},
    )

    n: int = 0
    mean: float | None = None
    stderr: float | None = None
    ci95: list[float] | None = Field(None, description="[low, high], bootstrap")


class ConditionRow(Estimate):
    """A row of SEAL's table: one way to make the adapter, scored on the held-out passages' questions."""

    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={
            "examples": [
                {
                    "condition": "p0",
                    "label": "passage + self-edits (round-0 generator)",
                    "short_label": "passage + round 0",
                    "n": 8,
                    "mean": 0.41,
                    "stderr": 0.05,
                    "ci95": [0.31, 0.51],
                    "gain": {"n": 8, "mean": 0.12, "stderr": 0.04, "ci95": [0.05, 0.2]},
                    "retention": 0.93,
                    "retention_n": 8,
                }
            ]
        },
    )

    condition: str = Field(description="base, passage, p0, p1..., teacher:<name>")
    label: str = ""
    short_label: str = ""
    gain: Estimate | None = Field(None, description="over the no-adapter row, paired by passage")
    retention: float | None = Field(None, description="mean score on the retention set (forgetting)")
    retention_n: int = 0
    #: The budget the condition trained with, and its gain on another passage's questions (held-out rows only;
    #: declared after the fields above so that they dump where they always have).
    steps: Estimate | None = Field(None, description="training steps per passage")
    tokens: Number | None = Field(None, description="mean training tokens per passage")
    control_gain: Estimate | None = Field(
        None, description="gain on another passage's questions (the specificity control)"
    )


class RoundRow(ConditionRow):
    """The conditions table's row of one round's generator."""

    round: int


class Comparison(_Stored):
    """One planned comparison on one metric: a paired test of condition `a` against `b`, Holm-corrected."""

    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={
            "examples": [
                {
                    "a": "p0",
                    "b": "passage",
                    "n": 8,
                    "mean_a": 0.41,
                    "mean_b": 0.33,
                    "mean_diff": 0.08,
                    "t_p": 0.02,
                    "holm_p": 0.04,
                    "ci95": [0.01, 0.15],
                    "verdict": "passage + self-edits (round-0 generator) beats passage only (holm p=0.04)",
                }
            ]
        },
    )

    a: str
    b: str
    n: int = 0
    mean_a: float | None = None
    mean_b: float | None = None
    mean_diff: float | None = None
    ci95: list[float] | None = None
    t_p: float | None = None
    holm_p: float | None = None
    verdict: str = ""
    # The rest of the paired test (seal_lab.scoring.stats.paired_test), after the fields above as always.
    dropped: int = 0
    sd_diff: Number | None = None
    stderr: Number | None = None
    t_stat: Number | None = None
    wilcoxon_stat: Number | None = None
    wilcoxon_p: Number | None = None
    mde: Number | None = None


class Comparisons(_Stored):
    primary_metric: str = ""
    planned: list[list[str]] = Field(default_factory=list, description="[a, b] pairs, in order")
    by_metric: dict[str, list[Comparison]] = Field(default_factory=dict)


class MetricEstimate(Estimate):
    """One metric of one condition over the held-out passages, with its gain over the no-adapter row."""

    gain: Estimate | None = None


class Power(_Stored):
    """The minimum detectable effect (two-sided paired t, alpha 0.05, power 0.8) at the N used."""

    metric: str = ""
    n: int = 0
    sd_of_differences: Number | None = None
    mde: Number | None = None


class TrainingSpent(_Stored):
    """What training a held-out condition's adapter took (null where the trainer did not say)."""

    steps: int | None = None
    tokens: int | None = None
    seconds: Number | None = None


class HeldoutEdit(_Stored):
    """The self-edit a held-out condition trained its adapter on."""

    dataset_key: str = ""
    adapter_key: str | None = None
    preview: str = ""
    num_texts: int = 0
    directive: DirectiveRecord = Field(default_factory=DirectiveRecord)


class HeldoutPassage(_Stored):
    """One held-out passage: per condition its score, every metric, control gain, training and retention."""

    passage_id: str
    title: str = ""
    scores: dict[str, Number | None] = Field(default_factory=dict, description="condition -> reward metric")
    metrics: dict[str, dict[str, Number]] = Field(
        default_factory=dict, description="condition -> metric -> score"
    )
    control_gain: dict[str, dict[str, Number]] = Field(
        default_factory=dict, description="condition -> metric -> gain on another passage's questions"
    )
    training: dict[str, TrainingSpent] = Field(default_factory=dict)
    retention: dict[str, Number | None] = Field(
        default_factory=dict, description="condition -> retention score"
    )
    self_edits: dict[str, HeldoutEdit] = Field(default_factory=dict)
    errors: list[str] = Field(default_factory=list)


class HeldoutResults(_Stored):
    """SEAL's conditions table on the held-out passages, with the planned comparisons."""

    metric: str = ""
    conditions: list[ConditionRow] = Field(default_factory=list)
    by_round: list[RoundRow] = Field(default_factory=list)
    comparisons: Comparisons | None = None
    metrics: dict[str, dict[str, MetricEstimate]] = Field(
        default_factory=dict, description="condition -> metric -> row"
    )
    power: Power | None = Field(None, description="the minimum detectable effect at this N")
    passages: list[HeldoutPassage] = Field(
        default_factory=list, description="per passage: scores, self-edits"
    )


class Trial(_Stored):
    """A self-edit trained with one directive (its own, or a directive-search trial's) and scored."""

    trial: str = Field("", description='"" for the self-edit\'s own directive, "-d<n>" for a search trial')
    directive: DirectiveRecord = Field(default_factory=DirectiveRecord)
    adapter_key: str | None = None
    train: TrainMetrics | None = None
    train_reused: bool = False
    train_error: str | None = None
    scores: Scores | None = None
    answers: list[Answer] = Field(default_factory=list)
    reward: Number | None = Field(None, description="the gain over the baseline, averaged over the seeds")
    seed_rewards: list[Number] = Field(default_factory=list)
    retention: Number | None = None
    forgetting: Number | None = None


class SelfEditResult(SelfEdit):
    """A self-edit as the generator wrote it, with its own trial's scores and every trial."""

    adapter_key: str | None = None
    train: TrainMetrics | None = None
    train_error: str | None = None
    scores: Scores | None = None
    answers: list[Answer] = Field(default_factory=list)
    reward: Number | None = None
    retention: Number | None = None
    forgetting: Number | None = None
    trials: list[Trial] = Field(default_factory=list)
    best_trial: str | None = None
    best_reward: Number | None = None
    trained_with: Literal["own", "default"] = Field(
        "own",
        description='"own": the adapter trained with the directive the self-edit wrote (`directive`, as '
        '`directive_source` says it was read); "default": with the trainer\'s default directive '
        '(`self_edit_directive` "default"), and `directive` is only what the model wrote. The trials hold '
        "the directive each adapter trained with",
    )


class QuestionResult(_Stored):
    question_id: str = ""
    question: str = ""
    answers: list[str] = Field(default_factory=list)


class PassageResult(_Stored):
    """One training passage in one round: its baseline, every self-edit with its rewards, and the best."""

    passage_id: str
    title: str = ""
    questions: list[QuestionResult] = Field(default_factory=list)
    policy_adapter_key: str = ""
    baseline: Scores | None = None
    baseline_answers: list[Answer] = Field(default_factory=list)
    baseline_retention: Number | None = None
    self_edits: list[SelfEditResult] = Field(default_factory=list)
    best: BestSelfEdit | None = None
    errors: list[str] = Field(default_factory=list)


class VarianceComponents(_Stored):
    """How much of a reward belongs to the self-edit and how much to the seed (seal_lab.scoring.stats)."""

    n_groups: int = 0
    mean_group_size: Number | None = None
    between: Number | None = None
    within: Number | None = None
    icc: Number | None = None
    ms_between: Number | None = None
    ms_within: Number | None = None


class RoundSummary(_Stored):
    """One round's means, retention, reward by format and directive, and the seconds spent."""

    #: "continual" in a continual run's summary (its other keys are the streams' summary); absent otherwise.
    mode: str | None = None
    metric: str = ""
    passages: int = 0
    passages_scored: int = 0
    mean_baseline: Number | None = None
    mean_adapted: Number | None = None
    mean_best: Number | None = None
    mean_best_gain: Number | None = None
    mean_reward: Number | None = None
    mean_retention_base: Number | None = None
    mean_retention_adapted: Number | None = None
    mean_forgetting: Number | None = None
    retention_questions: int = 0
    positive_best: int = 0
    self_edits: int = 0
    reward_by_format: dict[str, Number | None] = Field(default_factory=dict)
    reward_by_directive_source: dict[str, Number | None] = Field(
        default_factory=dict,
        description='how the directive each self-edit trained with was read -> mean reward (all "default" '
        "when the run trains the trainer's default directive)",
    )
    reward_by_directive: dict[str, dict[str, Number | None]] = Field(
        default_factory=dict, description="directive field -> value -> mean reward"
    )
    seconds: dict[str, Number] = Field(
        default_factory=dict, description="generate, train, evaluate, policy_train"
    )
    reward_variance: VarianceComponents | None = None


class HeldoutRoundMean(_Stored):
    round: int
    mean: Number | None = None
    stderr: Number | None = None
    n: int = 0


class ResultsSummary(RoundSummary):
    """Round 0's summary plus the run's shape."""

    rounds: int = 0
    training_passages: int = 0
    heldout_passages: int = 0
    heldout_by_round: list[HeldoutRoundMean] | None = None


class RoundResult(_Stored):
    """One training round: every passage's self-edits with their rewards, and the policy update after it."""

    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={
            "examples": [
                {
                    "round": 0,
                    "policy_adapter_key": "",
                    "summary": {"mean_baseline": 0.2, "mean_best": 0.45},
                    "policy_update": None,
                    "passages": [],
                }
            ]
        },
    )

    round: int
    policy_adapter_key: str | list[str] = Field(
        "", description="the generator's policy this round (a list only if passages disagree)"
    )
    summary: RoundSummary = Field(
        default_factory=RoundSummary, description="means, retention, reward by format and directive, seconds"
    )
    policy_update: FailedRecord | PolicyRecord | None = Field(
        None,
        description="the winners, the SFT dataset and the policy adapter (ReST-EM runs); {error} if it failed",
    )
    passages: list[PassageResult] = Field(
        default_factory=list, description="per passage: baseline, self-edits, best"
    )


class SearchTrial(_Stored):
    """What one directive-search trial did against the self-edits' own directives."""

    trial: str
    override: dict[str, Number] = Field(default_factory=dict)
    n: int = 0
    mean_reward: Number | None = None
    own_mean_reward: Number | None = None
    better_than_own: int = 0
    worse_than_own: int = 0


class WhatWorked(_Stored):
    """Across every round: reward by format, by directive bucket, and what directive search found."""

    reward_by_format: dict[str, Estimate] = Field(default_factory=dict)
    reward_by_directive_bucket: dict[str, dict[str, Estimate]] = Field(default_factory=dict)
    directive_search: list[SearchTrial] = Field(default_factory=list)


class GainPoint(_Stored):
    """One adapter's gain and retention score (the gain-vs-forgetting plot)."""

    group: str
    gain: Number
    retention: Number | None = None


class BaseModelInfo(_Stored):
    name: str = ""
    fingerprint: str = ""


class PolicyAdapter(_Stored):
    round: int
    adapter_key: str = ""


class Runtime(_Stored):
    """Package versions of the coordinator and of each service."""

    coordinator: dict[str, str] = Field(default_factory=dict)
    generator: dict[str, str] | None = None
    evaluator: dict[str, str] | None = None
    trainers: list[dict[str, str]] = Field(default_factory=list)


class Reproducibility(_Stored):
    """What it takes to rerun a run and get the same self-edits and scores."""

    seed: int = 0
    #: The run's config as it was stored: kept as JSON, since a config a newer or older version wrote need
    #: not validate as this version's RunConfig (results must load whichever version wrote them).
    config: dict[str, Any] = Field(default_factory=dict)
    split: RunSplit = Field(default_factory=RunSplit)
    teachers: dict[str, list[str]] = Field(default_factory=dict, description="name -> passage ids")
    base_model: BaseModelInfo = Field(default_factory=BaseModelInfo)
    policy_adapters: list[PolicyAdapter] = Field(default_factory=list, description="sha256-keyed adapters")
    runtime: Runtime = Field(default_factory=Runtime)


class DatasetTexts(_Stored):
    """A stored self-edit dataset's text: the raw self-edit, its directive line and the training texts."""

    raw_output: str = ""
    directive_text: str = ""
    texts: list[str] = Field(default_factory=list)
    #: Why the dataset could not be read (only then present).
    error: str | None = None


class Example(_Stored):
    """One of the best or worst self-edits of the training rounds, with its full text."""

    round: int
    passage_id: str
    title: str = ""
    format: str = ""
    sample_index: int = 0
    reward: Number | None = None
    scores: Scores | None = None
    retention: Number | None = None
    directive: DirectiveRecord = Field(default_factory=DirectiveRecord)
    directive_source: str | None = None
    trained_with: Literal["own", "default"] = Field("own", description="as in a self-edit's results")
    raw_output: str = ""
    directive_text: str = ""
    texts: list[str] = Field(default_factory=list)
    error: str | None = None


class StepChoice(_Stored):
    """What a continual step kept (results/continual.py `step_choice`): the engine carries its adapter on and
    replays its dataset, the results read it back from the same records."""

    adapter_key: str
    dataset_key: str = ""
    sample_index: int = 0
    rewards: list[Number | None] | None = Field(
        None, description="each candidate's reward (pick best); null for pick first"
    )


class ContinualStep(_Stored):
    """One finished step of a stream: the passage it learned, what it kept, and the model measured after it.
    (The fields of `StepChoice` sit between the passage and the measures, where the builder writes them.)"""

    position: int
    passage_id: str = ""
    title: str = ""
    adapter_key: str = ""
    dataset_key: str = ""
    sample_index: int = 0
    rewards: list[Number | None] | None = None
    mean_seen: Number | None = Field(None, description="mean over the passages seen so far")
    retention: Number | None = None
    retention_base: Number | None = Field(None, description="the base model's retention score")
    next: Number | None = Field(None, description="the next unseen passage's score (the specificity control)")
    next_base: Number | None = None


class ContinualStream(_Stored):
    """One ordering of the passages, learned one step after the other, as far as it went."""

    ordering: int
    order: list[str] = Field(default_factory=list, description="passage ids, in the stream's order")
    titles: list[str] = Field(default_factory=list)
    steps_done: int = 0
    stopped: str = Field("", description="why the stream stopped early; empty when it finished")
    baseline: list[Number | None] = Field(default_factory=list, description="the base model, per passage")
    matrix: list[list[Number | None]] = Field(
        default_factory=list,
        description="passage (row, in order) after step (column); null above the diagonal and for steps not done",
    )
    mean_seen: list[Number | None] = Field(default_factory=list, description="per step done")
    forgetting: list[Number | None] = Field(
        default_factory=list, description="per passage: right after its step minus at the end"
    )
    final_model: str = ""
    steps: list[ContinualStep] = Field(default_factory=list)


class ContinualByPosition(_Stored):
    """SEAL's continual figure: the passage learned i-th after j steps, averaged over the finished streams."""

    matrix: list[list[Number | None]] = Field(default_factory=list)
    mean_seen: list[Number | None] = Field(default_factory=list)
    forgetting: list[Number | None] = Field(default_factory=list)
    streams: int = Field(0, description="the finished streams averaged")


class StreamFinal(_Stored):
    """One stream's final figures (`per_stream`)."""

    ordering: int
    final_mean_seen: Number | None = None
    final_retention: Number | None = None
    retention_base: Number | None = None
    mean_forgetting: Number | None = None


class ContinualSummary(_Stored):
    """The streams' final figures, the means over streams."""

    streams: int = 0
    streams_finished: int = 0
    final_mean_seen: Number | None = None
    final_retention: Number | None = None
    retention_base: Number | None = None
    mean_forgetting: Number | None = None


class ContinualResults(_Stored):
    """A continual run's streams (results/continual.py): per stream the accuracy matrix (passage i after step
    j: rows the stream's passages in order, columns its steps, null above the diagonal), the mean over the
    passages seen after each step, forgetting per passage (right after its step minus at the end), retention
    and the next unseen passage per step; `by_position` averages the finished streams (SEAL's figure)."""

    metric: str
    pick: str
    carry: str
    streams: list[ContinualStream]
    by_position: ContinualByPosition
    per_stream: list[StreamFinal]
    summary: ContinualSummary = Field(
        description="final mean over seen passages, final retention (and the base model's), mean forgetting"
    )


class RunResults(_Stored):
    """A finished run's results (`/v1/runs/{id}/results`). Keys a newer coordinator adds pass through."""

    summary: ResultsSummary = Field(description="round 0's summary plus the run's shape (rounds, held-out)")
    passages: list[PassageResult] = Field(description="round 0's passages (the inner loop's table)")
    rounds: list[RoundResult]
    heldout: HeldoutResults | None = Field(
        description="SEAL's conditions table: scores, metrics, comparisons with verdicts, retention"
    )
    what_worked: WhatWorked = Field(description="reward by format, by directive bucket, directive search")
    gain_vs_retention: list[GainPoint] = Field(description="one point per adapter")
    reproducibility: Reproducibility | None = None
    phase_seconds: dict[str, Number] | None = None
    examples: dict[str, list[Example]] | None = Field(
        None, description="the best and worst self-edits with their text"
    )
    continual: ContinualResults | None = Field(None, description="a continual run's streams (mode continual)")
