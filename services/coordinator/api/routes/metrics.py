"""`GET /metrics`: the coordinator's Prometheus metrics (text format), behind the token like `/v1`.

Read from the run manager at scrape time, into a registry of this app's own (tests build several apps):
- `seal_runs{status}`; for the unfinished runs, `seal_jobs_done{kind}` (the job's step: baseline, generate,
  train, evaluate, retention, policy, edit, control), `seal_jobs_failed{kind}`, `seal_jobs_remaining` (planned,
  not yet done) and `seal_run_seconds{run_id}` since each was created; `seal_finished_run_seconds` (count,
  sum) over the finished ones;
- `seal_pending_training_jobs`: Train calls started and not finished (waiting for a trainer slot, backing
  off, or training): the trainers' demand, to scale them on, next to `seal_trainer_slots` (the Train calls the
  trainers take at once) and `seal_trainer_slots_busy`;
- `seal_jobs_in_progress{kind}` (jobs with a service call under way or waiting for one),
  `seal_pending_service_calls{service}`, `seal_service_call_errors_total{service,code}` and
  `seal_service_call_retries_total{service,code}` (callstats.py); `process_*` of this process.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any, get_args

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, ProcessCollector, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric, SummaryMetricFamily
from prometheus_client.registry import Collector

from ...engine import FINISHED_STATUSES, job_kind
from ...run.records import FailedRecord
from ...run.schemas import RunStatusName

router = APIRouter(tags=["metrics"])

RUN_STATUSES = get_args(RunStatusName)


class RunsCollector(Collector):
    def __init__(self, manager: Callable[[], Any]) -> None:
        self.manager = manager

    def collect(self) -> Iterator[Metric]:
        manager = self.manager()
        if manager is None:  # before the lifespan has built it
            return
        yield from _runs(list(manager.summaries()), list(manager.runs.values()))
        stats = manager.calls.stats
        trainers = manager.calls.clients.trainers.endpoints
        yield _gauge(
            "seal_pending_training_jobs", "Train calls started and not finished", stats.pending["trainer"]
        )
        yield _gauge(
            "seal_trainer_slots", "Train calls the trainers take at once", sum(t.capacity for t in trainers)
        )
        yield _gauge(
            "seal_trainer_slots_busy", "Train calls the trainers have now", sum(t.in_flight for t in trainers)
        )
        pending = GaugeMetricFamily(
            "seal_pending_service_calls", "Service calls started and not finished", labels=["service"]
        )
        for service in ("generator", "trainer", "evaluator"):
            pending.add_metric([service], stats.pending[service])
        yield pending
        in_progress = GaugeMetricFamily(
            "seal_jobs_in_progress",
            "Jobs with a service call started and not finished, by kind",
            labels=["kind"],
        )
        for kind, value in sorted(stats.pending_jobs.items()):
            if kind:
                in_progress.add_metric([kind], value)
        yield in_progress
        for name, counts, what in (
            ("seal_service_call_errors", stats.errors, "Failed service call attempts"),
            ("seal_service_call_retries", stats.retries, "Service call attempts after a failed one"),
        ):
            family = CounterMetricFamily(name, what, labels=["service", "code"])
            for (service, code), value in sorted(counts.items()):
                family.add_metric([service, code], value)
            yield family


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)


def _runs(summaries: list[Any], live: list[Any]) -> Iterator[Metric]:
    """Counts over every run's summary; jobs by kind over the unfinished runs in memory (their records)."""
    by_status = Counter(run.status for run in summaries)
    statuses = GaugeMetricFamily("seal_runs", "Runs this coordinator knows, by status", labels=["status"])
    for status in sorted({*RUN_STATUSES, *by_status}):
        statuses.add_metric([status], by_status[status])
    yield statuses
    done: Counter[str] = Counter()
    failed: Counter[str] = Counter()
    remaining = 0
    now = time.time()
    seconds = GaugeMetricFamily(
        "seal_run_seconds", "Seconds since an unfinished run was created", labels=["run_id"]
    )
    finished = [run for run in summaries if run.status in FINISHED_STATUSES and run.created_at]
    for run in live:
        if run.finished or run.unrunnable:
            continue
        for name, record in run.jobs.items():
            kind = job_kind(name)
            done[kind] += 1
            failed[kind] += isinstance(record, FailedRecord)
    for run in summaries:
        if run.status not in FINISHED_STATUSES:
            remaining += max(0, run.jobs_total - run.jobs_done)
            seconds.add_metric([run.id], now - run.created_at)
    for name, counts, what in (
        ("seal_jobs_done", done, "Jobs recorded by the unfinished runs, by kind"),
        ("seal_jobs_failed", failed, "Jobs of the unfinished runs that a service refused, by kind"),
    ):
        family = GaugeMetricFamily(name, what, labels=["kind"])
        for kind, value in sorted(counts.items()):
            family.add_metric([kind], value)
        yield family
    yield _gauge("seal_jobs_remaining", "Jobs the unfinished runs plan and have not done", remaining)
    yield seconds
    yield SummaryMetricFamily(
        "seal_finished_run_seconds",
        "Seconds from creation to the end of the finished runs",
        count_value=len(finished),
        sum_value=sum(max(0.0, run.updated_at - run.created_at) for run in finished),
    )


def registry_of(request: Request) -> CollectorRegistry:
    """This app's registry, made at its first scrape."""
    state = request.app.state
    registry = getattr(state, "metrics_registry", None)
    if registry is None:
        registry = CollectorRegistry()
        ProcessCollector(registry=registry)
        registry.register(RunsCollector(lambda: getattr(state, "manager", None)))
        state.metrics_registry = registry
    return registry


@router.get("/metrics", response_class=Response, responses={200: {"content": {"text/plain": {}}}})
async def metrics(request: Request) -> Response:
    """Prometheus text exposition; with a token set, it needs `Authorization: Bearer <token>` like /v1.
    On the event loop (async), so the runs are not read while they change."""
    return Response(generate_latest(registry_of(request)), media_type=CONTENT_TYPE_LATEST)
