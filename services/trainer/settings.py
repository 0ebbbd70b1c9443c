"""Trainer settings: `SEAL_TRAINER_*`."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from seal_lab.formats.directive import DIRECTIVE_CEILING
from seal_lab.settings import GrpcServiceSettings


class TrainerSettings(GrpcServiceSettings):
    model_config = SettingsConfigDict(env_prefix="SEAL_TRAINER_", extra="ignore")

    port: int = Field(default=50052, description="gRPC port.")
    # peft's "all-linear" = every linear layer but the output head; a comma list (q_proj,v_proj) also works.
    target_modules: str = Field(
        default="all-linear",
        description="LoRA target modules: `all-linear` (every linear layer but the output head) or a comma list (`q_proj,v_proj`).",
    )
    # The directive limits this trainer publishes; each within DIRECTIVE_CEILING (what a generator accepts).
    max_epochs: int = Field(
        default=10,
        ge=1,
        le=DIRECTIVE_CEILING.max_epochs,
        description="Directive limit this trainer publishes and enforces: epochs.",
    )
    max_lora_rank: int = Field(
        default=64, ge=1, le=DIRECTIVE_CEILING.max_lora_rank, description="Directive limit: LoRA rank."
    )
    max_max_length: int = Field(
        default=1024,
        ge=32,
        le=DIRECTIVE_CEILING.max_max_length,
        description="Directive limit: tokens per training example.",
    )
    max_batch_size: int = Field(
        default=16,
        ge=1,
        le=DIRECTIVE_CEILING.max_batch_size,
        description="Directive limit: examples per optimizer step.",
    )
    max_dataset_examples: int = Field(
        default=2000, description="A dataset with more training examples is refused (INVALID_ARGUMENT)."
    )
    # The most optimizer steps a directive may ask for: 10 epochs of 20 examples at batch size 1. A model may
    # write `steps=1000` (the embedded one does); on a laptop that is a quarter of an hour per adapter.
    max_steps: int = Field(
        default=200,
        ge=1,
        le=DIRECTIVE_CEILING.max_steps,
        description="Directive limit: optimizer steps a directive may ask for.",
    )
    # The most tokens a directive's token budget may ask for: about the step limit's worst (200 steps of a
    # 1,024-token sequence). 0 turns token budgets off.
    max_tokens: int = Field(
        default=200_000,
        ge=0,
        le=DIRECTIVE_CEILING.max_tokens,
        description="Directive limit: training tokens a directive's token budget may ask for (0 = none).",
    )
    # The recipe's schedule (HF Trainer's, as SEAL trained): linear warmup over this share of a job's steps,
    # then linear decay to zero; each adapter's gradient clipped to this norm (0 = no clipping).
    warmup_ratio: float = Field(
        default=0.1,
        ge=0.0,
        le=0.5,
        description="The recipe's schedule: linear warmup over this share of a job's steps. Part of every job key.",
    )
    lr_decay: bool = Field(
        default=True,
        description="The recipe's schedule: linear decay of the learning rate to zero after the warmup. Part of every job key.",
    )
    max_grad_norm: float = Field(
        default=1.0,
        ge=0.0,
        description="Each adapter's gradient norm is clipped to this (0: no clipping). Part of every job key.",
    )
    # End plain knowledge text with EOS (SEAL pads with EOS and learns it); chosen by the recipe pilot.
    text_eos: bool = Field(
        default=True,
        description="End plain knowledge text with EOS (SEAL's recipe, chosen by the recipe pilot).",
    )
    # Concurrent Train calls trained together in one group (adapters stacked, one forward/backward per step).
    # Unset: 32 on CUDA; 1 on a CPU. On two CPU cores a group of 4 one-example jobs trains 1.4x as many
    # tokens per second as one job (135 against 97, docs/benchmarks/speed.md), but grouped results depend on the group
    # in the last float bits, and a run with groups of one is reproducible bit for bit: set 4 for speed.
    max_group_size: int | None = Field(
        default=None,
        ge=1,
        le=256,
        description="Concurrent Train calls trained together, one forward/backward per step. Unset: 32 on CUDA, 1 on a CPU (groups of one keep runs reproducible bit for bit). Published in `GetInfo`; the coordinator keeps that many jobs in flight per trainer.",
    )
    # A job waits at most this long for companions before its group starts (arrivals during a group's
    # training join the next group at once).
    group_window_seconds: float = Field(
        default=0.5, ge=0, le=30, description="How long a job waits for companions before its group starts."
    )
    # Train calls admitted at once (training, or queued for a group); more are refused with RESOURCE_EXHAUSTED
    # (cause "busy"). A coordinator sends at most `max_group_size` at once to each trainer, so the default
    # leaves room for several coordinators; each queued call holds its dataset in memory.
    max_queued_jobs: int = Field(
        default=256,
        ge=1,
        le=100_000,
        description="Train calls admitted at once (training, or queued for a group); more are refused with RESOURCE_EXHAUSTED marked busy.",
    )
    # Tokens in one forward pass; a bigger step is split into micro-batches that add up to the same update.
    # Unset: 4096 on a CPU, 65536 on CUDA.
    tokens_per_step: int | None = Field(
        default=None,
        ge=64,
        description="Tokens per forward pass; a bigger step is split into micro-batches adding up to the same update. Unset: 4096 on a CPU, 65536 on CUDA.",
    )
    # Examples are packed end to end into rows of this many tokens (attention never crosses an example, but
    # a row's attention is computed whole). Unset: 1024 on a CPU, 2048 on CUDA. On two CPU cores a step of
    # four 65-token examples trained at 177 tokens/s in one row against 150 in rows of 256, whose padding
    # the model computes too (docs/benchmarks/speed.md).
    row_tokens: int | None = Field(
        default=None,
        ge=64,
        description="Length of the rows examples are packed into. Unset: 1024 on a CPU, 2048 on CUDA.",
    )


@dataclass(frozen=True)
class GroupShape:
    max_group_size: int
    tokens_per_step: int
    row_tokens: int


def group_defaults(settings: TrainerSettings, device: str) -> GroupShape:
    """Group size, tokens per forward pass and row length for this device, unless set."""
    cuda = device.startswith("cuda")
    return GroupShape(
        max_group_size=settings.max_group_size or (32 if cuda else 1),
        tokens_per_step=settings.tokens_per_step or (65536 if cuda else 4096),
        row_tokens=settings.row_tokens or (2048 if cuda else 1024),
    )
