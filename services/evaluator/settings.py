"""Evaluator settings: `SEAL_EVALUATOR_*`."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import SettingsConfigDict

from seal_lab.settings import GrpcServiceSettings, secret_or_file


class EvaluatorSettings(GrpcServiceSettings):
    # hide_input_in_errors: a validation error must not print the judge's API key.
    model_config = SettingsConfigDict(env_prefix="SEAL_EVALUATOR_", extra="ignore", hide_input_in_errors=True)

    port: int = Field(default=50053, description="gRPC port.")
    max_new_tokens: int = Field(
        default=32, description="Answer length in tokens, when a request does not set it."
    )
    max_questions: int = Field(
        default=500, description="Questions one Evaluate call may carry; more are refused (INVALID_ARGUMENT)."
    )
    max_adapters_per_request: int = Field(
        default=64, description="Adapters one Evaluate call may carry; more are refused (INVALID_ARGUMENT)."
    )
    # Rows (adapter x question pairs, baseline included) per batched generate: every adapter of a request and
    # the base model answer together, each row under its own adapter.
    batch_size: int = Field(
        default=64, description="Rows (adapter x question, baseline included) per batched generate."
    )
    # Evaluate calls admitted at once (in progress or waiting for the model); more are refused with
    # RESOURCE_EXHAUSTED (cause "busy"). Each waiting call holds its question sets in memory.
    max_queued_calls: int = Field(
        default=64,
        ge=1,
        le=100_000,
        description="Evaluate calls admitted at once (running or waiting for the model); more are refused with RESOURCE_EXHAUSTED marked busy.",
    )

    # SEAL's own judge (optional): an OpenAI-compatible endpoint asked SEAL's yes/no grading prompt about
    # every answer. Off while `judge_base_url` is empty. The key has no default on purpose; a local server
    # (vLLM, llama.cpp) may need none.
    judge_base_url: str = Field(
        default="",
        description="SEAL's judge (optional): an OpenAI-compatible endpoint, e.g. `https://api.openai.com/v1`; requests go to `{base_url}/chat/completions`. Empty: off.",
    )  # e.g. https://api.openai.com/v1 (requests go to {base_url}/chat/completions)
    judge_model: str = Field(
        default="", description="The judge's model (SEAL judged with `gpt-4.1`); required with a base URL."
    )  # SEAL judged with gpt-4.1
    judge_api_key: SecretStr | None = Field(
        default=None,
        description="The judge's key, sent as a bearer token (no default on purpose; a local server may need none).",
    )
    judge_api_key_file: Path | None = Field(
        default=None,
        description="Read the judge's key from this file instead (Docker or Kubernetes secrets); not both.",
    )  # a Docker/Kubernetes secret file holding the key
    judge_timeout_seconds: float = Field(60.0, gt=0, description="Per request to the judge.")
    judge_concurrency: int = Field(
        8, ge=1, le=64, description="Requests to the judge in flight at once."
    )  # requests in flight at once
    judge_max_tokens: int = Field(
        16, ge=1, le=1024, description="The judge's reply budget (its answer is yes or no; temperature is 0)."
    )  # the reply is "yes" or "no"
    # Retries after a 429, a 5xx, a timeout or a refused connection; a Retry-After longer than
    # `judge_max_retry_wait_seconds` fails the evaluation at once (UNAVAILABLE) instead of hanging.
    judge_max_retries: int = Field(
        4, ge=0, le=20, description="Retries after a 408/429/5xx, a timeout or a refused connection."
    )
    judge_max_retry_wait_seconds: float = Field(
        30.0,
        ge=0,
        description="The longest `Retry-After` waited for; a longer one fails the evaluation at once (UNAVAILABLE).",
    )

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
