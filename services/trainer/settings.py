"""Trainer settings: `SEAL_TRAINER_*`."""

from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from seal_lab.settings import GrpcServiceSettings


class TrainerSettings(GrpcServiceSettings):
    model_config = SettingsConfigDict(env_prefix="SEAL_TRAINER_", extra="ignore")

    port: int = 50052
    # peft's "all-linear" = every linear layer but the output head; a comma list (q_proj,v_proj) also works.
    target_modules: str = "all-linear"
    max_epochs: int = 10
    max_lora_rank: int = 64
    max_max_length: int = 1024
    max_batch_size: int = 16
    max_dataset_examples: int = 2000
