"""Evaluator settings: `SEAL_EVALUATOR_*`."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from seal_lab.settings import GrpcServiceSettings


class EvaluatorSettings(GrpcServiceSettings):
    model_config = SettingsConfigDict(env_prefix="SEAL_EVALUATOR_", extra="ignore")

    port: int = 50053
    max_new_tokens: int = 32
    max_questions: int = 500
    max_adapters_per_request: int = 64
    # Rows (adapter x question pairs, baseline included) per batched generate: every adapter of a request and
    # the base model answer together, each row under its own adapter.
    batch_size: int = 64
    # Evaluate calls admitted at once (in progress or waiting for the model); more are refused with
    # RESOURCE_EXHAUSTED (cause "busy"). Each waiting call holds its question sets in memory.
    max_queued_calls: int = Field(default=64, ge=1, le=100_000)
