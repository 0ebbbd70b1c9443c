"""A finished run's results as the API sends them (`/v1/runs/{id}/results`): typed models with examples, so
the OpenAPI document says what a client reads, from the top down to SEAL's conditions table, the planned
comparisons and the rounds.

Permissive on purpose: every model keeps keys it does not name (a newer coordinator's), and fields a stored
result from an older one lacks are optional and stay absent in the response (not sent as null), so the
results read back exactly as they were stored.
"""

from __future__ import annotations

from typing import Any

from pydantic import ConfigDict, Field

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


class Comparisons(_Stored):
    primary_metric: str = ""
    planned: list[list[str]] = Field(default_factory=list, description="[a, b] pairs, in order")
    by_metric: dict[str, list[Comparison]] = Field(default_factory=dict)


class HeldoutResults(_Stored):
    """SEAL's conditions table on the held-out passages, with the planned comparisons."""

    metric: str = ""
    conditions: list[ConditionRow] = Field(default_factory=list)
    by_round: list[RoundRow] = Field(default_factory=list)
    comparisons: Comparisons | None = None
    metrics: dict[str, dict[str, Any]] = Field(default_factory=dict, description="condition -> metric -> row")
    power: dict[str, Any] | None = Field(None, description="the minimum detectable effect at this N")
    passages: list[dict[str, Any]] = Field(
        default_factory=list, description="per passage: scores, self-edits"
    )


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
    summary: dict[str, Any] = Field(
        default_factory=dict, description="means, retention, reward by format and directive, seconds"
    )
    policy_update: dict[str, Any] | None = Field(
        None, description="the winners, the SFT dataset and the policy adapter (ReST-EM runs)"
    )
    passages: list[dict[str, Any]] = Field(
        default_factory=list, description="per passage: baseline, self-edits, best"
    )


class ContinualResults(_Stored):
    """A continual run's streams (results/continual.py): per stream the accuracy matrix (passage i after step
    j: rows the stream's passages in order, columns its steps, null above the diagonal), the mean over the
    passages seen after each step, forgetting per passage (right after its step minus at the end), retention
    and the next unseen passage per step; `by_position` averages the finished streams (SEAL's figure)."""

    metric: str
    pick: str
    carry: str
    streams: list[dict[str, Any]]
    by_position: dict[str, Any]
    per_stream: list[dict[str, Any]]
    summary: dict[str, Any] = Field(
        description="final mean over seen passages, final retention (and the base model's), mean forgetting"
    )


class RunResults(_Stored):
    """A finished run's results (`/v1/runs/{id}/results`). Keys a newer coordinator adds pass through."""

    summary: dict[str, Any] = Field(description="round 0's summary plus the run's shape (rounds, held-out)")
    passages: list[dict[str, Any]] = Field(description="round 0's passages (the inner loop's table)")
    rounds: list[RoundResult]
    heldout: HeldoutResults | None = Field(
        description="SEAL's conditions table: scores, metrics, comparisons with verdicts, retention"
    )
    what_worked: dict[str, Any] = Field(description="reward by format, by directive bucket, directive search")
    gain_vs_retention: list[dict[str, Any]] = Field(description="one point per adapter")
    reproducibility: dict[str, Any] | None = None
    phase_seconds: dict[str, Any] | None = None
    examples: dict[str, list[dict[str, Any]]] | None = Field(
        None, description="the best and worst self-edits with their text"
    )
    continual: ContinualResults | None = Field(None, description="a continual run's streams (mode continual)")
