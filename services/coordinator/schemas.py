"""HTTP request and response models of the coordinator API."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

RunStatusName = Literal["queued", "running", "succeeded", "completed_with_errors", "failed"]
RewardMetric = Literal["f1", "exact_match", "contains"]


class RunConfig(BaseModel):
    """How one round of the inner loop runs. Every field has a documented default."""

    model_config = ConfigDict(extra="forbid")

    k: int = Field(3, ge=1, le=16, description="self-edits per passage and format")
    formats: list[str] = Field(["implications"], min_length=1, max_length=8, description="self-edit formats")
    temperature: float = Field(0.7, ge=0.0, le=2.0)
    top_p: float = Field(0.95, gt=0.0, le=1.0)
    max_new_tokens: int = Field(192, ge=16, le=2048, description="length of one self-edit")
    seed: int = Field(0, ge=0, le=2**31 - 1)
    include_passage: bool = Field(True, description="train on the passage too (SEAL's passage + self-edits)")
    reward_metric: RewardMetric = Field("f1", description="score used for the reward and the best self-edit")
    eval_max_new_tokens: int = Field(32, ge=1, le=256)
    policy_adapter_key: str = Field("", description="generator policy adapter (ReST-EM); empty = base model")
    retention: bool = Field(
        True, description="also score every adapter on general questions the base model knows (forgetting)"
    )

    @model_validator(mode="after")
    def _unique_formats(self) -> RunConfig:
        if len(set(self.formats)) != len(self.formats):
            raise ValueError("formats has duplicates")
        return self


class RunCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field("", max_length=200)
    dataset: Literal["demo"] | None = Field(None, description="a built-in dataset instead of `passages`")
    passages: list[Any] | None = Field(
        None, description="SEAL/SQuAD format: [{title, context, questions: [{question, answer}]}]"
    )
    limit: int | None = Field(None, ge=1, description="use only the first N passages")
    config: RunConfig = Field(default_factory=RunConfig)

    @model_validator(mode="after")
    def _one_source(self) -> RunCreate:
        if (self.dataset is None) == (self.passages is None):
            raise ValueError("give exactly one of `dataset` or `passages`")
        return self


class RunCreated(BaseModel):
    id: str
    status: RunStatusName
    passages: int
    jobs_total: int


class RunEvent(BaseModel):
    seq: int
    ts: float
    kind: Literal["status", "progress", "job", "retry", "error"]
    message: str
    passage_id: str = ""
    job: str = ""
    data: dict[str, Any] = Field(default_factory=dict)


class RunSummary(BaseModel):
    id: str
    name: str
    status: RunStatusName
    created_at: float
    updated_at: float
    passages: int
    jobs_total: int
    jobs_done: int
    jobs_failed: int
    retries: int
    current: str
    error: str


class RunDetail(RunSummary):
    config: RunConfig
    services: dict[str, Any]
    recent_events: list[RunEvent]
    results: dict[str, Any] | None
