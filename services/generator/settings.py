"""Generator settings: `SEAL_GENERATOR_*`."""

from __future__ import annotations

from typing import Literal

from pydantic import SecretStr
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
