"""Evaluator settings: `SEAL_EVALUATOR_*`."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import SettingsConfigDict

from seal_lab.settings import GrpcServiceSettings, secret_or_file


class EvaluatorSettings(GrpcServiceSettings):
    # hide_input_in_errors: a validation error must not print the judge's API key.
    model_config = SettingsConfigDict(env_prefix="SEAL_EVALUATOR_", extra="ignore", hide_input_in_errors=True)

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

    # SEAL's own judge (optional): an OpenAI-compatible endpoint asked SEAL's yes/no grading prompt about
    # every answer. Off while `judge_base_url` is empty. The key has no default on purpose; a local server
    # (vLLM, llama.cpp) may need none.
    judge_base_url: str = ""  # e.g. https://api.openai.com/v1 (requests go to {base_url}/chat/completions)
    judge_model: str = ""  # SEAL judged with gpt-4.1
    judge_api_key: SecretStr | None = None
    judge_api_key_file: Path | None = None  # a Docker/Kubernetes secret file holding the key
    judge_timeout_seconds: float = Field(60.0, gt=0)
    judge_concurrency: int = Field(8, ge=1, le=64)  # requests in flight at once
    judge_max_tokens: int = Field(16, ge=1, le=1024)  # the reply is "yes" or "no"
    # Retries after a 429, a 5xx, a timeout or a refused connection; a Retry-After longer than
    # `judge_max_retry_wait_seconds` fails the evaluation at once (UNAVAILABLE) instead of hanging.
    judge_max_retries: int = Field(4, ge=0, le=20)
    judge_max_retry_wait_seconds: float = Field(30.0, ge=0)

    @model_validator(mode="after")
    def _judge(self) -> EvaluatorSettings:
        # An empty variable is unset (compose passes `${SEAL_EVALUATOR_JUDGE_API_KEY:-}` through): a local judge
        # needs no key, and the _FILE form must not clash with an empty value.
        if self.judge_api_key is not None and not self.judge_api_key.get_secret_value():
            self.judge_api_key = None
        self.judge_api_key = secret_or_file(
            self.judge_api_key, self.judge_api_key_file, "SEAL_EVALUATOR_JUDGE_API_KEY"
        )
        if self.judge_base_url and not self.judge_model:
            raise ValueError("SEAL_EVALUATOR_JUDGE_BASE_URL needs SEAL_EVALUATOR_JUDGE_MODEL (e.g. gpt-4.1)")
        if self.judge_base_url and not self.judge_base_url.startswith(("http://", "https://")):
            raise ValueError("SEAL_EVALUATOR_JUDGE_BASE_URL must start with http:// or https://")
        return self

    @property
    def judge_enabled(self) -> bool:
        return bool(self.judge_base_url)
