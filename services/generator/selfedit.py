"""Turn what a backend wrote into a self-edit: training texts, a validated directive, a stored dataset."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from seal_lab.directive import DirectiveLimits, ParsedDirective, parse_directive
from seal_lab.store import ObjectStore, jsonl_bytes

from .backends import RawSelfEdit
from .formats import SelfEditFormat

DATASET_PREFIX = "datasets"


@dataclass(frozen=True)
class StoredSelfEdit:
    dataset_key: str
    sample_index: int
    parsed: ParsedDirective
    texts: list[str]
    raw: RawSelfEdit


def dataset_records(
    passage_title: str,
    passage_context: str,
    texts: list[str],
    include_passage: bool,
    meta: dict[str, Any],
) -> list[dict[str, Any]]:
    """JSONL records: one meta record (prompt, raw output, directive...), then one example per text.

    Every training sequence is `"{title}\n{text}"`, and the passage itself comes first (SEAL's recipe: the
    title ties each fact to its topic, which the questions name). Examples have `prompt` and `completion`;
    the trainer learns the completion only (prompt is empty here).
    """
    title = passage_title.strip()
    examples = [f"{title}\n{passage_context}".strip()] if include_passage else []
    examples += [f"{title}\n{text}".strip() for text in texts]
    return [{"type": "meta", **meta}] + [{"type": "example", "prompt": "", "completion": t} for t in examples]


def store_self_edit(
    store: ObjectStore,
    raw: RawSelfEdit,
    sample_index: int,
    edit_format: SelfEditFormat,
    limits: DirectiveLimits,
    passage: Any,
    prompt: str,
    include_passage: bool,
    provenance: dict[str, Any],
) -> StoredSelfEdit:
    parsed = parse_directive(raw.directive_text, limits)
    texts = edit_format.training_texts(raw.text)
    meta = {
        "format": edit_format.name,
        "passage_id": passage.passage_id,
        "sample_index": sample_index,
        "prompt": prompt,
        "raw_output": raw.text,
        "directive_text": raw.directive_text,
        "directive": parsed.directive.as_dict(),
        "directive_source": parsed.source.value,
        "directive_notes": list(parsed.notes),
        "include_passage": include_passage,
        "generated_tokens": raw.tokens,
        "policy_examples": [{"prompt": p, "completion": c} for p, c in raw.policy_examples],
        **provenance,
    }
    records = dataset_records(passage.title, passage.context, texts, include_passage, meta)
    key = store.put_content(DATASET_PREFIX, jsonl_bytes(records), ".jsonl", "application/x-ndjson")
    return StoredSelfEdit(key, sample_index, parsed, texts, raw)
