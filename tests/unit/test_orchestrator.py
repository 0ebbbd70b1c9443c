"""The coordinator's run engine over fake service stubs (fake_services.py) and a local store: retries,
failover, refused jobs, an unreachable trainer, resumption (no model, no gRPC server; milliseconds)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import grpc

from seal_lab.store.local import LocalStore
from services.coordinator.engine.manager import RunManager
from services.coordinator.engine.records import MANIFEST, job_key, run_key
from services.coordinator.engine.state import RunState
from services.coordinator.run.jobs import JobName
from services.coordinator.run.records import FailedRecord
from services.coordinator.run.schemas import RunConfig, RunCreate
from services.coordinator.settings import CoordinatorSettings
from tests.unit.fake_services import ADAPTED_F1, BASE_F1, FakeClients

#: Two demo passages, two self-edits each: per passage a baseline, a generation, two trainings, an evaluation.
JOBS_PER_PASSAGE = 5
REQUEST = RunCreate(dataset="demo", limit=2, config=RunConfig(k=2, retention=False))


def settings(trainers: list[str] | None = None, **overrides: Any) -> CoordinatorSettings:
    values = {
        "trainer_addresses": trainers or ["trainer-a:1"],
        "initial_backoff_seconds": 0.0,
        "max_backoff_seconds": 0.0,
        "max_attempts": 3,
        **overrides,
    }
    return CoordinatorSettings(**values)


async def until(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.001)


async def run_to_end(manager: RunManager, run: RunState) -> RunState:
    """Wait until the run is no longer executing here (finished, failed or stopped)."""
    await until(lambda: run.id not in manager._tasks)
    return manager.get(run.id)


def scenario(
    tmp_path: Any, clients: FakeClients, config: CoordinatorSettings, body: Callable[..., Awaitable[Any]]
) -> Any:
    """Start a manager over the fakes and a store under tmp_path, run `body(manager, clients, store)`, stop it."""

    async def main() -> Any:
        store = LocalStore(tmp_path / "store")
        manager = RunManager(store, clients, config)
        await manager.start()
        try:
            return await body(manager, clients, store)
        finally:
            await manager.shutdown()

    return asyncio.run(main())


def retry_events(run: RunState) -> list[dict[str, Any]]:
    return [e.data for e in run.events if e.kind == "retry"]


def test_a_run_over_fake_services_records_every_job_then_its_manifest(tmp_path):
    async def body(manager: RunManager, clients: FakeClients, store: LocalStore) -> None:
        run = await run_to_end(manager, await manager.create(REQUEST))
        assert run.status == "succeeded" and run.retries == 0
        assert len(run.jobs) == run.jobs_total == 2 * JOBS_PER_PASSAGE
        for name in run.jobs:
            assert store.get_json(job_key(run.id, name)) == run.jobs[name].model_dump()
            assert JobName.parse(name).index in (0, 1)
        assert store.get_json(run_key(run.id, MANIFEST))["status"] == "succeeded"
        assert run.results is not None
        assert run.results.summary.mean_best_gain == round(ADAPTED_F1 - BASE_F1, 4)
        assert clients.generator.calls["Generate"] == 2 and clients.trainer["trainer-a:1"].calls["Train"] == 4

    scenario(tmp_path, FakeClients(["trainer-a:1"]), settings(), body)


def test_a_run_with_a_heldout_passage_scores_its_conditions_and_keeps_one_split(tmp_path):
    request = RunCreate(dataset="demo", limit=3, config=RunConfig(k=1, retention=False, heldout=1))

    async def body(manager: RunManager, clients: FakeClients, store: LocalStore) -> None:
        run = await run_to_end(manager, await manager.create(request))
        assert run.status == "succeeded" and len(run.jobs) == run.jobs_total
        split = store.get_json(run_key(run.id, "spec.json"))["split"]
        assert len(split["train"]) == 2 and len(split["heldout"]) == 1
        assert run.results is not None and run.results.reproducibility.split.model_dump() == {
            "train": split["train"],
            "heldout": split["heldout"],
        }
        heldout = {JobName.parse(name).condition for name in run.jobs} - {""}
        assert heldout == {"passage", "p0"}
        assert clients.generator.calls["Import"] == 1  # the passage-only condition
        rows = {row["condition"]: row for row in run.results.model_dump()["heldout"]["conditions"]}
        assert rows["p0"]["n"] == 1 and rows["p0"]["mean"] == ADAPTED_F1

    scenario(tmp_path, FakeClients(["trainer-a:1"]), settings(), body)


def test_an_unavailable_service_is_retried_and_the_run_goes_on(tmp_path):
    config = settings()
    clients = FakeClients(config.trainer_addresses)
    clients.evaluator.fail("Evaluate", grpc.StatusCode.UNAVAILABLE, times=2)

    async def body(manager: RunManager, clients: FakeClients, store: LocalStore) -> None:
        run = await run_to_end(manager, await manager.create(REQUEST))
        assert run.status == "succeeded" and run.retries == 2
        assert retry_events(run) == 2 * [
            {"service": "evaluator", "address": config.evaluator_address, "code": "UNAVAILABLE"}
        ]
        assert len(run.jobs) == run.jobs_total

    scenario(tmp_path, clients, config, body)


def test_a_training_job_on_a_failing_trainer_is_retried_on_another(tmp_path):
    config = settings(["trainer-a:1", "trainer-b:2"])
    clients = FakeClients(config.trainer_addresses)
    clients.trainer["trainer-a:1"].fail("Train", grpc.StatusCode.UNAVAILABLE, times=100)

    async def body(manager: RunManager, clients: FakeClients, store: LocalStore) -> None:
        run = await run_to_end(manager, await manager.create(REQUEST))
        assert run.status == "succeeded"
        trained = [r.model_dump() for name, r in run.jobs.items() if JobName.parse(name).step == "train"]
        assert len(trained) == 4 and {record["trainer"] for record in trained} == {"trainer-b:2"}
        failed_on = {event["address"] for event in retry_events(run)}
        assert clients.trainer["trainer-a:1"].calls["Train"] >= 1 and failed_on == {"trainer-a:1"}

    scenario(tmp_path, clients, config, body)


def test_a_refused_job_fails_alone_and_the_run_completes_with_errors(tmp_path):
    config = settings()
    clients = FakeClients(config.trainer_addresses)
    clients.trainer["trainer-a:1"].fail("Train", grpc.StatusCode.INVALID_ARGUMENT, details="no texts")

    async def body(manager: RunManager, clients: FakeClients, store: LocalStore) -> None:
        run = await run_to_end(manager, await manager.create(REQUEST))
        assert run.status == "completed_with_errors" and run.retries == 0
        failed = {name: r.model_dump() for name, r in run.jobs.items() if isinstance(r, FailedRecord)}
        assert len(failed) == 1
        (name, record), *_ = failed.items()
        assert JobName.parse(name).step == "train"
        assert record["error"].startswith("trainer refused training datasets/")
        assert record["error"].endswith(": INVALID_ARGUMENT: no texts")
        assert store.get_json(job_key(run.id, name)) == record  # recorded: a resume does not retry it
        assert [e.job for e in run.events if e.kind == "error"] == [name]
        assert len(run.jobs) == run.jobs_total and clients.trainer["trainer-a:1"].calls["Train"] == 4

    scenario(tmp_path, clients, config, body)


def test_an_unreachable_trainer_fails_the_run_and_a_resume_redoes_no_finished_job(tmp_path):
    config = settings(max_concurrent_passages=1)
    clients = FakeClients(config.trainer_addresses)
    trainer = clients.trainer["trainer-a:1"]
    trainer.fail("Train", grpc.StatusCode.UNAVAILABLE, times=100, details="connection refused")

    async def body(manager: RunManager, clients: FakeClients, store: LocalStore) -> None:
        run = await run_to_end(manager, await manager.create(REQUEST))
        assert run.status == "failed"
        # Both self-edits train at once: the first to use up its attempts stops the run.
        assert config.max_attempts <= trainer.calls["Train"] <= 2 * config.max_attempts
        assert (
            "trainer unavailable" in run.error
            and "after 3 attempts: UNAVAILABLE: connection refused" in run.error
        )
        done = dict(run.jobs)
        assert sorted(done) == ["0000-baseline", "0000-generate-implications"]
        calls = clients.generator.calls["Generate"], clients.evaluator.calls["Evaluate"]

        trainer.recover()
        run = await run_to_end(manager, await manager.resume(run.id))
        assert run.status == "succeeded" and len(run.jobs) == run.jobs_total
        assert all(run.jobs[name] == record for name, record in done.items())
        # Passage 0's baseline and self-edits were recorded: only passage 1 generates, and the evaluator
        # scores passage 0's adapters, then passage 1's baseline and adapters.
        assert clients.generator.calls["Generate"] - calls[0] == 1
        assert clients.evaluator.calls["Evaluate"] - calls[1] == 3

    scenario(tmp_path, clients, config, body)


def test_a_service_that_cannot_reach_the_store_pauses_the_run_without_using_its_attempts(tmp_path):
    config = settings()
    clients = FakeClients(config.trainer_addresses)
    clients.generator.fail("Generate", grpc.StatusCode.UNAVAILABLE, times=5, store_outage=True)

    async def body(manager: RunManager, clients: FakeClients, store: LocalStore) -> None:
        run = await run_to_end(manager, await manager.create(REQUEST))
        assert run.status == "succeeded" and clients.generator.calls["Generate"] == 7
        assert {e["service"] for e in retry_events(run)} == {"store"} and run.retries == 5

    scenario(tmp_path, clients, config, body)


def test_a_trainer_with_another_base_model_fails_the_run_before_any_job(tmp_path):
    config = settings()
    clients = FakeClients(config.trainer_addresses)
    clients.trainer["trainer-a:1"].fingerprint = "sha256:another-model"

    async def body(manager: RunManager, clients: FakeClients, store: LocalStore) -> None:
        run = await run_to_end(manager, await manager.create(REQUEST))
        assert run.status == "failed" and not run.jobs
        assert "trainer at trainer-a:1 serves fake (sha256:another-model)" in run.error
        assert "all services must share one base model" in run.error
        assert run.services.model_dump()["trainers"][0]["model_fingerprint"] == "sha256:another-model"

    scenario(tmp_path, clients, config, body)


def test_trainers_of_two_precisions_fail_the_run_before_any_job(tmp_path):
    config = settings(["trainer-a:1", "trainer-b:1"])
    clients = FakeClients(config.trainer_addresses)
    clients.trainer["trainer-a:1"].dtype = "bfloat16"

    async def body(manager: RunManager, clients: FakeClients, store: LocalStore) -> None:
        run = await run_to_end(manager, await manager.create(REQUEST))
        assert run.status == "failed" and not run.jobs
        assert "trainers train in different precisions" in run.error
        assert "trainer-a:1 bfloat16" in run.error and "float32" in run.error

    scenario(tmp_path, clients, config, body)


async def stopped_mid_training(store: LocalStore, config: CoordinatorSettings) -> RunState:
    """A run whose coordinator stopped while its first training was in flight: unfinished in the store."""
    clients = FakeClients(config.trainer_addresses)
    clients.trainer["trainer-a:1"].hold("Train")
    manager = RunManager(store, clients, config)
    await manager.start()
    run = await manager.create(REQUEST)
    await until(clients.trainer["trainer-a:1"].holding.is_set)
    await manager.shutdown()
    return run


def test_a_restarted_coordinator_resumes_the_run_and_redoes_no_finished_job(tmp_path):
    config = settings(max_concurrent_passages=1)
    second = FakeClients(config.trainer_addresses)

    async def main() -> None:
        store = LocalStore(tmp_path / "store")
        run = await stopped_mid_training(store, config)
        assert sorted(run.jobs) == ["0000-baseline", "0000-generate-implications"]

        restarted = RunManager(store, second, config)
        await restarted.start()
        try:
            await until(lambda: run.id in restarted.runs)
            resumed = await run_to_end(restarted, restarted.runs[run.id])
            assert resumed.status == "succeeded" and len(resumed.jobs) == resumed.jobs_total
            assert any(e.message == "coordinator restarted: resuming run" for e in resumed.events)
            assert second.generator.calls["Generate"] == 1  # passage 0's self-edits were recorded
            assert second.evaluator.calls["Evaluate"] == 3  # passage 1's baseline, both evaluations
            assert store.get_json(run_key(run.id, MANIFEST))["status"] == "succeeded"
        finally:
            await restarted.shutdown()

    asyncio.run(main())


def test_a_coordinator_that_resumes_nothing_by_itself_resumes_an_interrupted_run_on_request(tmp_path):
    """What the long benchmarks rely on to run in parts (benchmarks/resume.py): their local stack starts with
    `resume_unfinished_runs` off, finds an interrupted run where it was, and resumes it when asked, redoing no
    finished job."""
    config = settings(max_concurrent_passages=1)
    quiet = settings(max_concurrent_passages=1, resume_unfinished_runs=False)
    second = FakeClients(config.trainer_addresses)

    async def main() -> None:
        store = LocalStore(tmp_path / "store")
        run = await stopped_mid_training(store, config)  # the benchmark's stack stopped (Ctrl-C, a timeout)

        restarted = RunManager(store, second, quiet)
        await restarted.start()
        try:
            await asyncio.sleep(0.2)
            assert run.id not in restarted.runs and not restarted._tasks  # left alone
            assert (await restarted.find(run.id)).status == "queued"
            resumed = await run_to_end(restarted, await restarted.resume(run.id))
            assert resumed.status == "succeeded" and len(resumed.jobs) == resumed.jobs_total
            assert any(e.message == "resuming run on request" for e in resumed.events)
            assert second.generator.calls["Generate"] == 1  # passage 0's self-edits were recorded
            assert second.evaluator.calls["Evaluate"] == 3  # passage 1's baseline, both evaluations
        finally:
            await restarted.shutdown()

    asyncio.run(main())


def test_a_trainer_waiting_for_the_store_to_save_an_adapter_shows_in_the_run(tmp_path):
    """A trained adapter the trainer cannot save yet (its store is full or away): the run does not read
    "running, step 2/2" for as long as that lasts, but paused, saying what it waits for, with an event."""
    config = settings(max_concurrent_passages=1)
    clients = FakeClients(config.trainer_addresses)
    trainer = clients.trainer["trainer-a:1"]
    reason = "the store: bucket quota exceeded (saving the trained adapter, kept in memory meanwhile; retry 1 in 1s)"
    trainer.waiting_for = reason
    trainer.hold("Save")

    async def body(manager: RunManager, clients: FakeClients, store: LocalStore) -> None:
        run = await manager.create(REQUEST)
        # Every training of the passage reaches the wait (`current` is the latest word of any of them).
        # Another job's start may take `current` a moment; the trainer's next notice (each retry) takes it back.
        await until(lambda: run.current.startswith("paused: training "))
        summary = run.summary()
        assert summary.status == "paused"
        assert "(step 2/2)" in summary.current
        assert summary.current.endswith(f"is waiting for {reason}")
        waiting = [e for e in run.events if e.data.get("via") == "trainer"]
        assert waiting[0].kind == "retry" and waiting[0].data["service"] == "store"
        assert "trainer at trainer-a:1 is waiting for the store: bucket quota exceeded" in waiting[0].message
        trainer.waiting_for = ""  # the store is back: the jobs save and the run goes on
        trainer.release("Save")
        finished = await run_to_end(manager, run)
        assert finished.status == "succeeded" and not finished.current.startswith("paused")

    scenario(tmp_path, clients, config, body)
