"""The services the coordinator sees now (`GET /v1/services`): each one's address, whether it answered GetInfo
(and why not), the model it serves, and what the coordinator sends it at once and has under way."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class ServiceStatus(BaseModel):
    """One service as its GetInfo answered just now; the model fields are empty when it did not answer."""

    service: Literal["generator", "evaluator", "trainer"]
    address: str
    reachable: bool = Field(description="whether it answered GetInfo within `info_timeout_seconds`")
    error: str | None = Field(None, description="why it did not answer: the status and its one-line reason")
    model_name: str = ""
    model_fingerprint: str = ""
    version: str = Field("", description="its seal-lab version")
    device: str = ""
    dtype: str = ""
    backend: str = Field("", description="the generator's: local or openai")
    max_group_size: int | None = Field(
        None, description="a trainer's: the Train calls it trains together in one group, as it reports"
    )
    capacity: int = Field(
        description="calls the coordinator sends it at once: a trainer's slots in the pool, the generator's "
        "and evaluator's concurrency setting"
    )
    in_flight: int | None = Field(None, description="a trainer's: Train calls on it now")
    load: float | None = Field(None, description="a trainer's: in_flight / capacity")
    pending: int | None = Field(
        None,
        description="the generator's and evaluator's: calls started and not finished (waiting for a slot, "
        "backing off or running)",
    )
    cooling_down: bool = Field(
        False, description="a trainer's: a call to it failed lately, so it gets no job while another is there"
    )
    draining: bool = Field(
        False, description="a trainer gone from DNS: it gets no new job, its running ones finish"
    )


class ServicesStatus(BaseModel):
    """Every service the coordinator sees, each asked GetInfo at once (concurrently, with a short deadline)."""

    generator: ServiceStatus
    evaluator: ServiceStatus
    trainers: list[ServiceStatus] = Field(description="the trainers in the pool now (DNS names resolved)")
    trainers_missing: str | None = Field(None, description="why there is no trainer, when there is none")
    pending_training_jobs: int = Field(description="Train calls started and not finished, on any trainer")
    info_timeout_seconds: float = Field(description="the deadline each GetInfo was given")
