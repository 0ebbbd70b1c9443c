"""A strategy's stages, run in order on a backend: what each sample's stages wrote, and its self-edit."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from seal_lab.formats.directive import DirectiveLimits
from seal_lab.formats.strategies import Strategy
from seal_lab.model.callend import IsCancelled

from .backends import Backend, RawSelfEdit, Sampling


@dataclass(frozen=True)
class StagedSelfEdit:
    """One sample: the last stage's prompt and output (with its directive), and every earlier stage's
    {"name", "prompt", "output"} in order (empty for a one-stage strategy)."""

    raw: RawSelfEdit
    prompt: str
    stages: tuple[dict[str, str], ...]


def stage_sampling(strategy: Strategy, index: int, run: Sampling) -> Sampling:
    """Stage `index`'s sampling: its own values over the run's. Stage i samples with seed + 2i (the local
    backend's directive pass takes seed + 1), so a one-stage strategy samples exactly as before."""
    own = strategy.stages[index].sampling
    return Sampling(
        run.temperature if own.temperature is None else own.temperature,
        run.top_p if own.top_p is None else own.top_p,
        run.max_new_tokens if own.max_new_tokens is None else own.max_new_tokens,
        run.seed + 2 * index,
    )


def run_stages(
    backend: Backend,
    strategy: Strategy,
    title: str,
    context: str,
    num_samples: int,
    sampling: Sampling,
    policy_adapter_key: str,
    limits: DirectiveLimits,
    cancelled: IsCancelled | None = None,
) -> list[StagedSelfEdit]:
    """`num_samples` self-edits. One stage: one prompt, K samples (as the generator always did). Several:
    stage 1 writes K samples of one prompt; each later stage continues each sample with a prompt holding that
    sample's earlier outputs; the last stage writes the directive too."""
    last = len(strategy.stages) - 1
    if last == 0:
        prompt = strategy.render(0, title, context, {})
        raws = backend.write(
            prompt, num_samples, stage_sampling(strategy, 0, sampling), policy_adapter_key, limits, cancelled
        )
        return [StagedSelfEdit(raw, prompt, ()) for raw in raws]
    earlier: list[dict[str, str]] = [{} for _ in range(num_samples)]
    records: list[list[dict[str, str]]] = [[] for _ in range(num_samples)]
    tokens = [0] * num_samples
    examples: list[tuple[tuple[str, str], ...]] = [() for _ in range(num_samples)]
    for index, stage in enumerate(strategy.stages):
        prompts = [strategy.render(index, title, context, outputs) for outputs in earlier]
        raws = backend.write_each(
            prompts,
            stage_sampling(strategy, index, sampling),
            policy_adapter_key,
            limits,
            cancelled,
            directive=index == last,
        )
        for sample, (prompt, raw) in enumerate(zip(prompts, raws, strict=True)):
            tokens[sample] += raw.tokens
            examples[sample] += raw.policy_examples
            if index < last:
                earlier[sample][stage.name] = raw.text
                records[sample].append({"name": stage.name, "prompt": prompt, "output": raw.text})
    return [
        StagedSelfEdit(
            dataclasses.replace(raw, tokens=tokens[sample], policy_examples=examples[sample]),
            prompt,
            tuple(records[sample]),
        )
        for sample, (prompt, raw) in enumerate(zip(prompts, raws, strict=True))
    ]
