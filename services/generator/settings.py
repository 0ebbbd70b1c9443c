"""Generator settings: `SEAL_GENERATOR_*`."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from seal_lab.settings import GrpcServiceSettings


class GeneratorSettings(GrpcServiceSettings):
    model_config = SettingsConfigDict(env_prefix="SEAL_GENERATOR_", extra="ignore")

    port: int = Field(default=50051, description="gRPC port.")
    backend: Literal["local", "openai"] = Field(
        default="local",
        description="`local` (the base model, optionally with a policy adapter from the store) or `openai` (an OpenAI-compatible teacher).",
    )
    # An OpenAI-compatible teacher (only with backend=openai). The key has no default on purpose.
    openai_base_url: str = Field(
        default="",
        description="The teacher's OpenAI-compatible endpoint (with `backend=openai`), e.g. `http://host:8001/v1` (vLLM, llama.cpp server, a hosted API).",
    )
    openai_model: str = Field(default="", description="The teacher's model name.")
    openai_api_key: SecretStr | None = Field(
        default=None, description="The teacher's API key (no default on purpose)."
    )
    openai_timeout_seconds: float = Field(default=120.0, description="Per request to the teacher.")
    # Retries after a 429, a 5xx, a timeout or a refused connection (the judge's rule: seal_lab.openai_client);
    # a Retry-After longer than `openai_max_retry_wait_seconds` fails the call at once (UNAVAILABLE).
    openai_max_retries: int = Field(
        4,
        ge=0,
        le=20,
        description="Retries of a teacher request after a 429, a 5xx, a timeout or a refused connection.",
    )
    openai_max_retry_wait_seconds: float = Field(
        60.0,
        ge=0,
        description="The longest Retry-After the generator waits out; a longer one fails the call at once.",
    )
    # Generate and Import calls admitted at once (in progress or waiting for the model); more are refused
    # with RESOURCE_EXHAUSTED (cause "busy").
    max_queued_calls: int = Field(
        default=64,
        ge=1,
        le=100_000,
        description="Generate and Import calls admitted at once (running or waiting for the model); more are refused with RESOURCE_EXHAUSTED marked busy, which the coordinator waits out.",
    )
