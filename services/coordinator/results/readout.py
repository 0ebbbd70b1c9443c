"""Reading a run's job records back: a job's record, its failed jobs, a score of an evaluation, a mean."""

from __future__ import annotations

import contextlib
import statistics
from collections.abc import Callable
from typing import Any

from ..run.jobs import JobName


def mean(values: list[float]) -> float | None:
    return round(statistics.fmean(values), 4) if values else None


def record_of(jobs: dict[str, dict[str, Any]], job: JobName) -> dict[str, Any]:
    return jobs.get(str(job), {})


def errors_of(jobs: dict[str, dict[str, Any]], belongs: Callable[[JobName], bool]) -> list[str]:
    """The failed jobs that `belongs` picks, as "label: error" (a name this version never writes is skipped)."""
    errors = []
    for name, record in jobs.items():
        if "error" in record:
            with contextlib.suppress(ValueError):
                job = JobName.parse(name)
                if belongs(job):
                    errors.append(f"{job.label}: {record['error']}")
    return errors


def metric_of(evaluations: dict[str, Any], key: str | None, metric: str) -> float | None:
    """`key` "" is the base model; None (no adapter was trained) has no score."""
    if key is None:
        return None
    return evaluations.get(key, {}).get("mean", {}).get(metric)
