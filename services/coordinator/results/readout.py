"""Reading a run's job records back: a job's record, its failed jobs, a score of an evaluation, a mean."""

from __future__ import annotations

import contextlib
import statistics
from collections.abc import Callable, Mapping

from ..run.jobs import JobName
from ..run.records import (
    DirectiveRecord,
    Evaluation,
    EvaluationRecord,
    FailedRecord,
    JobRecord,
    SelfEdit,
    SelfEditsRecord,
    TrainRecord,
)

Jobs = Mapping[str, JobRecord]


def mean(values: list[float]) -> float | None:
    return round(statistics.fmean(values), 4) if values else None


def record_of(jobs: Jobs, job: JobName) -> JobRecord | None:
    return jobs.get(str(job))


def evaluations_of(jobs: Jobs, job: JobName) -> dict[str, Evaluation]:
    """The evaluations of an evaluate job, by adapter key (none when it failed or has not run)."""
    record = record_of(jobs, job)
    return record.evaluations if isinstance(record, EvaluationRecord) else {}


def self_edits_of(jobs: Jobs, job: JobName) -> SelfEditsRecord | None:
    record = record_of(jobs, job)
    return record if isinstance(record, SelfEditsRecord) else None


def trained_of(jobs: Jobs, job: JobName) -> TrainRecord | None:
    record = record_of(jobs, job)
    return record if isinstance(record, TrainRecord) else None


def seconds_of(jobs: Jobs, job: JobName) -> float:
    """The seconds a generate or evaluate job took (0 when it failed or has not run)."""
    record = record_of(jobs, job)
    return record.seconds if isinstance(record, SelfEditsRecord | EvaluationRecord) else 0.0


def error_of(jobs: Jobs, job: JobName) -> str | None:
    record = record_of(jobs, job)
    return record.error if isinstance(record, FailedRecord) else None


def trained_directive(train: TrainRecord | None, edit: SelfEdit) -> DirectiveRecord:
    """The directive an adapter trained with: its train record's, else (a record from before train records
    kept it) the one the self-edit wrote."""
    if train is not None and "directive" in train.model_fields_set and train.directive is not None:
        return train.directive
    return edit.directive


def errors_of(jobs: Jobs, belongs: Callable[[JobName], bool]) -> list[str]:
    """The failed jobs that `belongs` picks, as "label: error" (a name this version never writes is skipped)."""
    errors = []
    for name, record in jobs.items():
        if isinstance(record, FailedRecord):
            with contextlib.suppress(ValueError):
                job = JobName.parse(name)
                if belongs(job):
                    errors.append(f"{job.label}: {record.error}")
    return errors


def metric_of(evaluations: Mapping[str, Evaluation], key: str | None, metric: str) -> float | None:
    """`key` "" is the base model; None (no adapter was trained) has no score."""
    if key is None:
        return None
    evaluation = evaluations.get(key)
    return None if evaluation is None else evaluation.mean.value(metric)
