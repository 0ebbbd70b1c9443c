"""Training datasets in the store: one owner for what the generator and the coordinator write and the trainer
(and the coordinator's results) read.

A dataset is canonical JSON lines (sorted keys), stored under its content key `datasets/<sha256>.jsonl`:

- first, one meta record `{"type": "meta", ...}`: for a self-edit, what the generator knew (`SelfEditMeta`);
  for a policy's SFT set, the winning self-edits it teaches (`PolicyMeta`). The trainer ignores it.
- then one record per training example, `{"type": "example", "prompt": ..., "completion": ...}`: the trainer
  learns the completion only (the prompt, often empty, is context).

Readers also take hand-written examples: `{"text": ...}` (an empty prompt), or records of any other type with
`prompt` and `completion`. An example whose completion is blank teaches nothing and is skipped.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from seal_lab.errors import InvalidArgument
from seal_lab.formats.passages import unencodable_text
from seal_lab.store import ObjectStore, content_digest, jsonl_bytes

DATASET_PREFIX = "datasets"
DATASET_SUFFIX = ".jsonl"
DATASET_CONTENT_TYPE = "application/x-ndjson"
POLICY_PURPOSE = "rest-em policy"
REPLAY_PURPOSE = "continual replay"


@dataclass(frozen=True)
class TrainingExample:
    """Loss is taken on `completion` only; `prompt` (may be empty) is context the model is not taught."""

    prompt: str
    completion: str

    def pair(self) -> dict[str, str]:
        return {"prompt": self.prompt, "completion": self.completion}

    def record(self) -> dict[str, str]:
        return {"type": "example", **self.pair()}


@dataclass(frozen=True)
class SelfEditMeta:
    """What the generator knew when it wrote one self-edit: the meta record of its dataset."""

    format: str
    passage_id: str
    sample_index: int
    #: The self-edit prompt, the model's whole output and its directive part, as written.
    prompt: str
    raw_output: str
    directive_text: str
    #: The directive as parsed and clamped (`Directive.as_dict`), how it was obtained, and what was changed.
    directive: dict[str, float | int]
    directive_source: str
    directive_notes: tuple[str, ...]
    include_passage: bool
    generated_tokens: int
    #: (prompt, completion) pairs that make the model write this self-edit: the policy's SFT examples.
    policy_examples: tuple[TrainingExample, ...]
    #: Who wrote it (backend, model, sampling, or the import source): kept as given, beside the fields above.
    provenance: dict[str, Any] = field(default_factory=dict)
    #: The strategy's hash (`seal_lab.formats.strategies`): "" for an original format as shipped, so those records
    #: (and store keys) are what they were before strategies were files; set, the record says which text ran.
    strategy_sha256: str = ""
    #: A multi-stage strategy's earlier stages, in order: {"name", "prompt", "output"} each (the last stage is
    #: `prompt` and `raw_output`). Empty for a one-stage strategy.
    stages: tuple[dict[str, str], ...] = ()

    def record(self) -> dict[str, Any]:
        extra: dict[str, Any] = {}
        if self.strategy_sha256:
            extra["strategy_sha256"] = self.strategy_sha256
        if self.stages:
            extra["stages"] = [dict(stage) for stage in self.stages]
        return {
            "type": "meta",
            "format": self.format,
            "passage_id": self.passage_id,
            "sample_index": self.sample_index,
            "prompt": self.prompt,
            "raw_output": self.raw_output,
            "directive_text": self.directive_text,
            "directive": self.directive,
            "directive_source": self.directive_source,
            "directive_notes": list(self.directive_notes),
            "include_passage": self.include_passage,
            "generated_tokens": self.generated_tokens,
            "policy_examples": [e.pair() for e in self.policy_examples],
            **extra,
            **self.provenance,
        }


@dataclass(frozen=True)
class PolicyMeta:
    """The meta record of a policy's SFT set: the winning self-edits it teaches (passage, dataset, reward...)."""

    winners: tuple[dict[str, Any], ...]

    def record(self) -> dict[str, Any]:
        return {"type": "meta", "purpose": POLICY_PURPOSE, "winners": list(self.winners)}


@dataclass(frozen=True)
class ReplayMeta:
    """The meta record of a continual step's training set with replay: the step's own self-edit dataset, and
    the earlier steps' datasets a seeded sample of examples was mixed in from."""

    dataset_key: str
    replayed_from: tuple[str, ...]
    replayed: int
    seed: int

    def record(self) -> dict[str, Any]:
        return {
            "type": "meta",
            "purpose": REPLAY_PURPOSE,
            "dataset_key": self.dataset_key,
            "replayed_from": list(self.replayed_from),
            "replayed": self.replayed,
            "seed": self.seed,
        }


@dataclass(frozen=True)
class Dataset:
    """A dataset as read: its meta record (empty when it has none) and its training examples."""

    meta: dict[str, Any]
    examples: tuple[TrainingExample, ...]

    @property
    def raw_output(self) -> str:
        return self.meta.get("raw_output", "")

    @property
    def directive_text(self) -> str:
        return self.meta.get("directive_text", "")

    @property
    def policy_examples(self) -> tuple[TrainingExample, ...]:
        return tuple(
            TrainingExample(e["prompt"], e["completion"]) for e in self.meta.get("policy_examples", [])
        )


def write_dataset(
    store: ObjectStore, meta: SelfEditMeta | PolicyMeta | ReplayMeta, examples: Sequence[TrainingExample]
) -> str:
    """Store a dataset under its content key (idempotent: the same records give the same key); return it."""
    records = [meta.record(), *(e.record() for e in examples)]
    return store.put_content(DATASET_PREFIX, jsonl_bytes(records), DATASET_SUFFIX, DATASET_CONTENT_TYPE)


def read_dataset(store: ObjectStore, key: str) -> Dataset:
    """A stored dataset; one under a content key is checked against it (a corrupt copy is quarantined)."""
    data = store.get_bytes(key) if content_digest(key) is None else store.get_verified(key)
    return parse_dataset(data, key)


def parse_dataset(data: bytes, key: str) -> Dataset:
    """Parse JSON lines (nothing is unpickled); InvalidArgument names the line that is wrong."""
    try:
        lines = data.decode("utf-8").splitlines()
    except UnicodeDecodeError:
        raise InvalidArgument(f"dataset {key!r} is not UTF-8 text") from None
    meta: dict[str, Any] | None = None
    examples = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InvalidArgument(f"dataset {key!r} line {number}: not JSON ({exc.msg})") from None
        if not isinstance(record, dict):
            raise InvalidArgument(f"dataset {key!r} line {number}: expected an object")
        if record.get("type") == "meta":
            if meta is not None:
                raise InvalidArgument(f"dataset {key!r} line {number}: a second meta record")
            meta = record
            continue
        if "text" in record:
            prompt, completion = "", record["text"]
        else:
            prompt, completion = record.get("prompt", ""), record.get("completion")
        if not isinstance(completion, str) or not isinstance(prompt, str):
            raise InvalidArgument(f"dataset {key!r} line {number}: needs a string 'text' or 'completion'")
        for name, text in (("prompt", prompt), ("text" if "text" in record else "completion", completion)):
            if (problem := unencodable_text(text)) is not None:  # it would fail in the tokenizer
                raise InvalidArgument(f"dataset {key!r} line {number}: {name!r} {problem}")
        if completion.strip():
            examples.append(TrainingExample(prompt, completion))
    return Dataset(meta or {}, tuple(examples))
