"""A run's job records: what each finished job left, as the engine writes it to the store (engine/records.py)
and the results read it back (results/). One model per kind of job, chosen by the job's name (run/jobs.py).

Open on purpose, like the results (result_schemas.py): a field a record from an older coordinator lacks is
absent, not null, and stays absent when the record is written or dumped again; a key this version does not
name is kept. So a record reads back exactly as it was stored, whichever version wrote it
(tests/fixtures/records/ holds records as earlier versions wrote them). Numbers keep their JSON type (an int
stays an int), so results built from a record read back are the same bytes as from the record in memory.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_serializer

from .jobs import JobName

#: A JSON number as it was written (a float field an older writer or a test filled with an int stays an int).
Number = float | int


class OpenRecord(BaseModel):
    """Open to unknown keys; what was not in the record is left out when it is dumped."""

    model_config = ConfigDict(extra="allow")

    @model_serializer(mode="wrap")
    def _absent_stays_absent(self, handler: Any):
        """(No return annotation: with one, the schema would be that type's instead of this model's.)"""
        data = handler(self)
        for name in type(self).model_fields:
            if name not in self.model_fields_set:
                data.pop(name, None)
        return data


class DirectiveRecord(OpenRecord):
    """A directive as a record keeps it: every field since `steps` was added, except `tokens`, kept only when
    set (`Directive.as_dict`); older records lack some (the first ones kept only the fields a self-edit set,
    as protobuf's ListFields gave them)."""

    epochs: int | None = None
    learning_rate: Number | None = None
    lora_rank: int | None = None
    lora_alpha: int | None = None
    batch_size: int | None = None
    max_length: int | None = None
    steps: int | None = None
    tokens: int | None = None

    def values(self) -> dict[str, Number]:
        """The fields the record has, by name."""
        return self.model_dump()


class SelfEdit(OpenRecord):
    """One self-edit the generator stored as a training dataset."""

    dataset_key: str = ""
    format: str = ""
    sample_index: int = 0
    directive: DirectiveRecord = Field(default_factory=DirectiveRecord)
    directive_source: str | None = None
    directive_notes: list[str] = []
    num_texts: int = 0
    preview: str = ""
    generated_tokens: int = 0


class SelfEditsRecord(OpenRecord):
    """A generate job (or a held-out condition's `edit` step): the self-edits and the generator's seconds."""

    seconds: Number = 0.0
    self_edits: list[SelfEdit] = []
    #: The policy that wrote them (Generate); "" is the base model.
    policy_adapter_key: str | None = None
    #: Where imported self-edits came from (Import): "passage-only" or "teacher:<name>".
    source: str | None = None


class TrainMetrics(OpenRecord):
    steps: int | None = None
    tokens: int | None = None
    seconds: Number | None = None
    tokens_per_second: Number | None = None
    final_loss: Number | None = None
    first_loss: Number | None = None
    #: Jobs the trainer trained together with this one (records before grouping lack it).
    group_size: int | None = None


class TrainRecord(OpenRecord):
    """A train job: the adapter, the directive it trained with (records before 2026-11-27 lack it)."""

    adapter_key: str | None = None
    directive: DirectiveRecord | None = None
    reused: bool = False
    trainer: str | None = None
    metrics: TrainMetrics | None = None


class Scores(OpenRecord):
    """An answer's scores, or their mean: what the evaluator sent (older records lack the later metrics;
    `judge` only from an evaluator with SEAL's judge)."""

    exact_match: Number | None = None
    f1: Number | None = None
    contains: Number | None = None
    token_recall: Number | None = None
    judge: Number | None = None
    gold_logprob: Number | None = None

    def value(self, metric: str) -> Any:
        """The metric's value, None when this record has none."""
        return getattr(self, metric, None)


class BestSelfEdit(OpenRecord):
    """A passage's best self-edit in a round (the round's results); a policy update's winners are these,
    with the passage they won on."""

    #: Only on a policy update's winners (a round's results keep it on the passage).
    passage_id: str | None = None
    format: str = ""
    sample_index: int = 0
    dataset_key: str = ""
    adapter_key: str | None = None
    #: The directive it trained with: its own, or the directive-search trial's that scored best.
    directive: DirectiveRecord = Field(default_factory=DirectiveRecord)
    directive_trial: str = ""
    reward: Number = 0.0
    scores: Scores | None = None
    positive: bool = False


class PolicyRecord(OpenRecord):
    """ReST-EM's policy update after a round: the winners it trained on, or why it was skipped."""

    round: int = 0
    previous_policy_adapter_key: str = ""
    #: The winning self-edits, as the round's results describe them (results/rounds.py `best`).
    winners: list[BestSelfEdit] = []
    adapter_key: str | None = None
    directive: DirectiveRecord | None = None
    reused: bool = False
    trainer: str | None = None
    metrics: TrainMetrics | None = None
    skipped: str = ""
    dataset_key: str | None = None
    examples: int | None = None


class Answer(OpenRecord):
    question_id: str = ""
    answer: str = ""
    scores: Scores = Field(default_factory=Scores)


class Evaluation(OpenRecord):
    """One adapter (or the base model, key "") on a set of questions."""

    mean: Scores = Field(default_factory=Scores)
    cached: bool = False
    answers: list[Answer] = []


class EvaluationRecord(OpenRecord):
    """An evaluate job (baseline, evaluate, retention, a held-out condition's evaluate or control)."""

    seconds: Number = 0.0
    #: Per adapter key, in the order asked for.
    evaluations: dict[str, Evaluation] = {}


class FailedRecord(OpenRecord):
    """A job a service refused: the run went on without it."""

    error: str


class ServiceRecord(OpenRecord):
    """A service as a run's start found it (its GetInfo), kept in the manifest and shown with the run."""

    address: str = ""
    service: str = ""
    version: str = ""
    model_name: str = ""
    model_fingerprint: str = ""
    device: str = ""
    dtype: str = ""
    backend: str = ""
    runtime: dict[str, str] = {}
    #: Train calls a trainer groups into one (trainers only).
    max_group_size: int | None = None


class RunServices(OpenRecord):
    """The services a run was checked against at its (last) start; empty before it started."""

    generator: ServiceRecord | None = None
    evaluator: ServiceRecord | None = None
    trainers: list[ServiceRecord] = []


class RunSplit(OpenRecord):
    """Which passages train the policy and which are held out, by id (the spec keeps the seed that chose
    them)."""

    seed: int | None = None
    train: list[str] = []
    heldout: list[str] = []


class StoredTeacher(OpenRecord):
    """An imported teacher's self-edits as the spec keeps them: held-out passage id -> completion."""

    name: str
    format: str = ""
    completions: dict[str, str] = {}


class RunSpec(OpenRecord):
    """`runs/<id>/spec.json` (and its copy): everything needed to run, and resume, a run. The first
    coordinators wrote no split and no teachers."""

    id: str | None = None
    name: str
    created_at: Number
    #: The RunConfig as JSON: read into this version's RunConfig when the run loads, so that a spec from
    #: another version still reads and the run is told unrunnable (with why) instead of being moved aside.
    config: dict[str, Any]
    #: SEAL/SQuAD-format passages as JSON, parsed (with clear errors) by seal_lab.formats.passages.
    passages: list[Any]
    split: RunSplit | None = None
    teachers: list[StoredTeacher] = []


class Manifest(OpenRecord):
    """`runs/<id>/manifest.json`, written last: its presence means the run finished."""

    id: str | None = None
    status: str
    error: str = ""
    finished_at: Number | None = None
    services: RunServices | None = None
    job_keys: list[str] = []
    #: The results as JSON (run/result_schemas.py RunResults): read on their own, so that results this version
    #: cannot read are told while the run's status still loads.
    results: dict[str, Any] | None


class LeaseRecord(OpenRecord):
    """`runs/<id>/lease/<epoch>.json`: which coordinator runs the run, and until when (engine/lease.py)."""

    run_id: str = ""
    epoch: int = 0
    owner: str = ""
    renewed_at: Number | None = None
    #: Seconds since the epoch; a lease without one protects nothing.
    expires_at: Number | None = None
    #: Given up by a graceful stop (only then present).
    released: bool | None = None

    def expired(self, now: float) -> bool:
        return self.expires_at is None or self.expires_at <= now


class UnknownRecord(OpenRecord):
    """The record of a job whose name this version never writes (a newer coordinator's): kept as it is,
    counted, and left out of the results."""


JobRecord = SelfEditsRecord | TrainRecord | PolicyRecord | EvaluationRecord | FailedRecord | UnknownRecord

#: Which record each job step leaves (run/jobs.py names the steps).
_RECORD_OF_STEP: dict[str, type[OpenRecord]] = {
    "generate": SelfEditsRecord,
    "edit": SelfEditsRecord,
    "train": TrainRecord,
    "policy": PolicyRecord,
    "baseline": EvaluationRecord,
    "evaluate": EvaluationRecord,
    "retention": EvaluationRecord,
    "control": EvaluationRecord,
    # a continual stream's evaluations (run/jobs.py CONTINUAL_STEPS)
    "candidates": EvaluationRecord,
    "candret": EvaluationRecord,
    "accuracy": EvaluationRecord,
    "next": EvaluationRecord,
}


def record_type(name: str) -> type[OpenRecord]:
    """The model of job `name`'s record (UnknownRecord for a name this version never writes)."""
    try:
        return _RECORD_OF_STEP[JobName.parse(name).step]
    except ValueError:
        return UnknownRecord


def parse_job_record(name: str, data: Any) -> JobRecord:
    """Job `name`'s record from its JSON (a failed job's whatever its step). ValueError (a pydantic
    ValidationError is one) when it is not the record such a job leaves."""
    if not isinstance(data, dict):
        raise ValueError(f"a job record is a JSON object, not {type(data).__name__}")
    if "error" in data:
        return FailedRecord.model_validate(data)
    return record_type(name).model_validate(data)  # type: ignore[return-value]


def job_records(jobs: Mapping[str, JobRecord | dict[str, Any]]) -> dict[str, JobRecord]:
    """Job records by name, JSON ones parsed (those the results are built from in a test, say)."""
    return {
        name: record if isinstance(record, OpenRecord) else parse_job_record(name, record)
        for name, record in jobs.items()
    }  # type: ignore[misc]
