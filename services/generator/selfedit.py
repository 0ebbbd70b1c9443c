"""Turn what a backend wrote into a self-edit: training texts, a validated directive, a stored dataset."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from seal_lab.formats.datasets import SelfEditMeta, TrainingExample, write_dataset
from seal_lab.formats.directive import DirectiveLimits, ParsedDirective, parse_directive
from seal_lab.formats.strategies import Strategy
from seal_lab.store import ObjectStore

from .backends import RawSelfEdit


@dataclass(frozen=True)
class StoredSelfEdit:
    dataset_key: str
    sample_index: int
    parsed: ParsedDirective
    texts: list[str]
    raw: RawSelfEdit


def training_examples(
    passage_title: str, passage_context: str, texts: list[str], include_passage: bool
) -> list[TrainingExample]:
    """One example per text, the passage itself first when asked.

    Every training sequence is `"{title}\n{text}"` (SEAL's recipe: the title ties each fact to its topic,
    which the questions name). The trainer learns the completion only (the prompt is empty here).
    """
    title = passage_title.strip()
    sequences = [f"{title}\n{passage_context}".strip()] if include_passage else []
    sequences += [f"{title}\n{text}".strip() for text in texts]
    return [TrainingExample("", sequence) for sequence in sequences]


def store_self_edit(
    store: ObjectStore,
    raw: RawSelfEdit,
    sample_index: int,
    strategy: Strategy,
    limits: DirectiveLimits,
    passage: Any,
    prompt: str,
    include_passage: bool,
    provenance: dict[str, Any],
    stages: tuple[dict[str, str], ...] = (),
) -> StoredSelfEdit:
    parsed = parse_directive(raw.directive_text, limits)
    texts = strategy.training_texts(raw.text)
    meta = SelfEditMeta(
        format=strategy.name,
        passage_id=passage.passage_id,
        sample_index=sample_index,
        prompt=prompt,
        raw_output=raw.text,
        directive_text=raw.directive_text,
        directive=parsed.directive.as_dict(),
        directive_source=parsed.source.value,
        directive_notes=parsed.notes,
        include_passage=include_passage,
        generated_tokens=raw.tokens,
        policy_examples=tuple(TrainingExample(p, c) for p, c in raw.policy_examples),
        provenance=provenance,
        strategy_sha256=strategy.key_hash,
        stages=stages,
    )
    examples = training_examples(passage.title, passage.context, texts, include_passage)
    key = write_dataset(store, meta, examples)
    return StoredSelfEdit(key, sample_index, parsed, texts, raw)
