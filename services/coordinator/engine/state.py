"""A run in memory (RunState) and the records it is made from and leaves: spec, manifest, reproducibility."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from seal_lab.errors import AlreadyExists, InvalidArgument
from seal_lab.formats.passages import Passage, parse_passages, passages_to_json
from seal_lab.runtime import runtime_versions
from seal_lab.store import ObjectStore

from ..results.continual import build_continual_results
from ..run.continual import continual_jobs_total
from ..run.jobs import JobName
from ..run.records import FailedRecord, JobRecord, Manifest, PolicyRecord, RunServices, RunSpec
from ..run.result_schemas import Reproducibility, RunResults
from ..run.schemas import SPEC_FIELDS_BEFORE, RunConfig, RunDetail, RunEvent, RunHeadline, RunSummary
from ..run.split import Split
from .lease import Lease
from .records import read_run, run_key

#: `runs/<id>/cancel.json`, written once when a run is cancelled: no coordinator runs it after that (its
#: presence is the cancellation, as the manifest's is the end of a finished run).
CANCEL = "cancel.json"


def new_run_id() -> str:
    return f"run-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}-{secrets.token_hex(3)}"


@dataclass
class RunState:
    id: str
    name: str
    config: RunConfig
    passages: list[Passage]
    created_at: float
    status: str = "queued"
    updated_at: float = 0.0
    error: str = ""
    current: str = ""
    jobs: dict[str, JobRecord] = field(default_factory=dict)
    events: list[RunEvent] = field(default_factory=list)
    services: RunServices = field(default_factory=RunServices)
    results: RunResults | None = None
    retries: int = 0
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    heldout_ids: frozenset[str] = frozenset()
    # teacher name -> (format, {passage_id: completion}) for the held-out passages it covers
    teachers: dict[str, tuple[str, dict[str, str]]] = field(default_factory=dict)
    round: int = 0
    policy_adapter_key: str = ""
    lease: Lease | None = None
    #: Why this coordinator cannot run this run at all (its spec is lost, or a newer seal-lab wrote it).
    unrunnable: str = ""
    #: Records found unreadable when the run was loaded (moved to quarantine), not yet told in its events.
    load_problems: list[str] = field(default_factory=list)
    #: Which passages train the policy and which are held out (from `heldout_ids`, computed once).
    split: Split = field(init=False)

    def __post_init__(self) -> None:
        self.split = Split.of(self.passages, self.heldout_ids)

    def pause(self, why: str) -> None:
        """Waiting for the store (the run goes on by itself when it is back). A cancelling run stays
        "cancelling": what it waits for is still its last work before it stops."""
        if self.status != "cancelling":
            self.status = "paused"
        self.current = why

    def unpause(self) -> None:
        """The store answered again: a paused run is running again."""
        if self.status == "paused":
            self.status = "running"

    def notify(self) -> None:
        """Wake whoever follows this run (the event stream): something changed."""
        self.changed.set()
        self.changed = asyncio.Event()

    @property
    def jobs_total(self) -> int:
        config = self.config
        if config.mode == "continual":
            return continual_jobs_total(config, self.passages)
        # per round and format: generate + K trainings (times the directive trials); then evaluate, retention
        per_round = len(config.formats) * (
            1 + config.k * (1 + len(config.directive_search)) * config.reward_seeds
        )
        per_round += 1 + config.retention
        per_train_passage = 1 + max(1, config.rounds) * per_round
        # per held-out passage: baseline, then per condition (passage only, each round's policy, each teacher
        # that covers it): self-edit (generated or imported), train, evaluate, control, retention
        control = config.specificity_control and len(self.split.heldout) >= 2
        heldout_jobs = sum(
            1
            + (3 + control + self.heldout_retention(i))
            * (
                1
                + config.rounds
                + 1
                + sum(self.passages[i].passage_id in c for _, c in self.teachers.values())
            )
            for i in self.split.heldout
        )
        return per_train_passage * len(self.split.train) + heldout_jobs + config.rounds

    def heldout_retention(self, index: int) -> bool:
        """Whether held-out passage `index`'s adapters are scored on the retention set."""
        limit = self.config.retention_heldout
        return self.config.retention and (not limit or self.split.heldout.index(index) < limit)

    @property
    def jobs_failed(self) -> int:
        return sum(1 for record in self.jobs.values() if isinstance(record, FailedRecord))

    @property
    def finished(self) -> bool:
        """Not executing, and not to be resumed without a request ("failed": POST .../resume)."""
        return self.status in ("succeeded", "completed_with_errors", "failed", "cancelled")

    def summary(self) -> RunSummary:
        return RunSummary(
            id=self.id,
            name=self.name,
            status=self.status,
            created_at=self.created_at,
            updated_at=self.updated_at,
            passages=len(self.passages),
            jobs_total=self.jobs_total,
            jobs_done=len(self.jobs),
            jobs_failed=self.jobs_failed,
            retries=self.retries,
            current=self.current,
            error=self.error,
            round=self.round,
            rounds=self.config.rounds,
            policy_adapter_key=self.policy_adapter_key,
            # Kept in the index entry with the rest: the runs page lists it without reading each run.
            headline=RunHeadline.of(self.results) if self.results is not None else None,
        )

    def detail(self, events: int = 50) -> RunDetail:
        return RunDetail(
            **self.summary().model_dump(),
            config=self.config,
            services=self.services,
            recent_events=self.events[max(0, len(self.events) - events) :],
            results=self.results,
        )


# ---- records -------------------------------------------------------------------------------------------


def run_spec(run: RunState) -> RunSpec:
    """The spec a new run is stored with: everything needed to run (and resume) it."""
    return RunSpec.model_validate(
        {
            "id": run.id,
            "name": run.name,
            "created_at": run.created_at,
            "config": run.config.model_dump(),
            "passages": passages_to_json(run.passages),
            "split": {"seed": run.config.seed, **run.split.ids(run.passages)},
            "teachers": [
                {"name": name, "format": fmt, "completions": completions}
                for name, (fmt, completions) in run.teachers.items()
            ],
        }
    )


def load_run(store: ObjectStore, run_id: str) -> RunState:
    """Blocking. A run whose records are partly unreadable still loads; it says what was moved aside."""
    stored = read_run(store, run_id)
    spec = stored.spec
    if spec is None:
        return _unrunnable(run_id, stored.problems, "its spec is unreadable in both copies (quarantined)")
    try:
        config = RunConfig(**{**SPEC_FIELDS_BEFORE, **spec.config})
        passages = parse_passages(spec.passages, f"run {run_id}")
    except (ValueError, InvalidArgument) as exc:
        # A spec from a newer seal-lab (an unknown config field, say): leave it untouched for that version.
        if isinstance(exc, ValidationError):
            detail = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        else:
            detail = str(exc).splitlines()[0]
        reason = f"its spec does not fit this seal-lab version ({detail})"
        return _unrunnable(run_id, stored.problems, reason, name=spec.name)
    run = RunState(
        id=run_id,
        name=spec.name,
        config=config,
        passages=passages,
        created_at=spec.created_at,
        updated_at=spec.created_at,
        heldout_ids=frozenset(spec.split.heldout if spec.split else []),
        teachers={t.name: (t.format, t.completions) for t in spec.teachers},
    )
    run.jobs = stored.jobs
    for record in sorted(stored.events, key=lambda e: e.get("ts", 0)):
        event = RunEvent(**{**record, "seq": len(run.events)})
        run.events.append(event)
        run.retries += event.kind == "retry"
        if event.data.get("run_failed"):  # failed runs wait for an explicit resume
            run.status, run.error = "failed", event.data.get("reason", event.message)
        elif event.data.get("resumed"):
            run.status, run.error = "queued", ""
    if stored.manifest is not None:
        manifest = stored.manifest
        run.status, run.error = manifest.status, manifest.error
        run.results = _stored_results(manifest.results, stored.problems)
        run.services = manifest.services or RunServices()
        if manifest.finished_at is not None:
            run.updated_at = manifest.finished_at
    elif is_cancelled(store, run_id):
        run.status, run.error = "cancelled", ""
        try:
            run.results = cancelled_results(run)
        except (ValueError, KeyError) as exc:  # its records only: the run loads without them
            stored.problems.append(
                f"the results of its finished steps cannot be built ({type(exc).__name__})"
            )
    run.load_problems = stored.problems
    return run


def cancelled_results(run: RunState) -> RunResults | None:
    """A cancelled continual run's results: the steps its streams finished, each stream as far as it got (its
    records are all there is: they are read again, not stored). None for a standard run (no partial results)."""
    if run.config.mode != "continual":
        return None
    results = build_continual_results(run.passages, run.jobs, run.config)
    results.reproducibility = reproducibility(run)
    return results


def _unrunnable(run_id: str, problems: list[str], reason: str, name: str = "") -> RunState:
    run = RunState(id=run_id, name=name, config=RunConfig(), passages=[], created_at=0.0)
    run.status, run.error, run.unrunnable = "failed", f"cannot run here: {reason}", reason
    run.load_problems = problems
    return run


def write_cancel(store: ObjectStore, run: RunState, owner: str) -> None:
    """Blocking. Record that `run` is cancelled (write-once; one another coordinator wrote first stands)."""
    record = {"id": run.id, "cancelled_at": time.time(), "by": owner, "status_before": run.status}
    with contextlib.suppress(AlreadyExists):
        store.put_json(run_key(run.id, CANCEL), record)


def is_cancelled(store: ObjectStore, run_id: str) -> bool:
    """Blocking: whether the run's cancellation is recorded (by any coordinator)."""
    return store.exists(run_key(run_id, CANCEL))


def manifest(run: RunState) -> Manifest:
    """Written last: its presence means the run finished."""
    return Manifest(
        id=run.id,
        status=run.status,
        error=run.error,
        finished_at=time.time(),
        services=run.services,
        job_keys=sorted(run.jobs),
        results=None if run.results is None else run.results.model_dump(),
    )


def _stored_results(stored: dict[str, Any] | None, problems: list[str]) -> RunResults | None:
    """A finished run's results from its manifest; ones this version cannot read are told, not served."""
    if stored is None:
        return None
    try:
        return RunResults.model_validate(stored)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(map(str, first["loc"]))
        problems.append(f"the results in the run's manifest cannot be read ({where}: {first['msg']})")
        return None


def _adapter_key(policy: JobRecord | None) -> str:
    """The adapter a policy update left ("" when it failed, or has not run)."""
    return (policy.adapter_key or "") if isinstance(policy, PolicyRecord) else ""


def reproducibility(run: RunState) -> Reproducibility:
    """What it takes to rerun this run and get the same self-edits and scores."""
    generator, evaluator = run.services.generator, run.services.evaluator
    policies = [run.config.policy_adapter_key] + [
        _adapter_key(run.jobs.get(str(JobName.policy(r)))) for r in range(run.config.rounds)
    ]
    return Reproducibility.model_validate(
        {
            "seed": run.config.seed,
            "config": run.config.model_dump(),
            "split": run.split.ids(run.passages),
            "teachers": {name: sorted(c) for name, (_, c) in run.teachers.items()},
            "base_model": {
                "name": evaluator.model_name if evaluator else "",
                "fingerprint": evaluator.model_fingerprint if evaluator else "",
            },
            # Adapter keys are sha256 over the adapter's weights and config.
            "policy_adapters": [{"round": r, "adapter_key": key} for r, key in enumerate(policies)],
            "runtime": {
                "coordinator": runtime_versions(),
                **{
                    name: info.runtime
                    for name, info in (("generator", generator), ("evaluator", evaluator))
                    if info
                },
                "trainers": [t.runtime for t in run.services.trainers],
            },
        }
    )
