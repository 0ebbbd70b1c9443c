"""Generator settings: `SEAL_GENERATOR_*`."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from seal_lab.settings import GrpcServiceSettings


class GeneratorSettings(GrpcServiceSettings):
    model_config = SettingsConfigDict(env_prefix="SEAL_GENERATOR_", extra="ignore")

    port: int = 50051
    backend: Literal["local", "openai"] = "local"
    # An OpenAI-compatible teacher (only with backend=openai). The key has no default on purpose.
    openai_base_url: str = ""
    openai_model: str = ""
    openai_api_key: SecretStr | None = None
    openai_timeout_seconds: float = 120.0
    # Retries after a 429, a 5xx, a timeout or a refused connection (the judge's rule: seal_lab.openai_client);
    # a Retry-After longer than `openai_max_retry_wait_seconds` fails the call at once (UNAVAILABLE).
    openai_max_retries: int = Field(4, ge=0, le=20)
    openai_max_retry_wait_seconds: float = Field(60.0, ge=0)
    # Generate and Import calls admitted at once (in progress or waiting for the model); more are refused
    # with RESOURCE_EXHAUSTED (cause "busy").
    max_queued_calls: int = Field(default=64, ge=1, le=100_000)
