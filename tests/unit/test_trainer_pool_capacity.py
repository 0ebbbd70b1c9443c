"""The trainer pool keeps up to each trainer's group size in flight; the demo launcher splits the cores (pure)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import grpc
import pytest

from services.coordinator.cli.launcher import TORCH_THREADS_ENV, LocalStack, torch_threads
from services.coordinator.engine.clients import TrainerEndpoint, TrainerPool
from tests.unit.fake_services import rpc_error


class _Channel:
    async def close(self) -> None:
        pass


def _pool(*capacities: int) -> TrainerPool:
    """Trainers "t0", "t1"... with these capacities; no channels are opened."""
    pool = TrainerPool(
        [f"t{i}" for i in range(len(capacities))],
        connect=lambda address: TrainerEndpoint(address, _Channel(), None),  # type: ignore[arg-type]
    )
    for i, capacity in enumerate(capacities):
        pool.set_capacity(f"t{i}", capacity)
    return pool


class _Holder:
    """Jobs that take a trainer and keep it until released."""

    def __init__(self, pool: TrainerPool) -> None:
        self.pool = pool
        self.got: list[str] = []
        self._release: dict[int, asyncio.Event] = {}
        self.tasks: list[asyncio.Task[None]] = []

    def start(self, avoid: str = "") -> int:
        job = len(self.tasks)
        self._release[job] = asyncio.Event()

        async def hold() -> None:
            async with self.pool.acquire(avoid=avoid) as endpoint:
                self.got.append(endpoint.address)
                await self._release[job].wait()

        self.tasks.append(asyncio.create_task(hold()))
        return job

    def release(self, job: int) -> None:
        self._release[job].set()

    async def finish(self) -> None:
        for event in self._release.values():
            event.set()
        await asyncio.gather(*self.tasks)


def _in_flight(pool: TrainerPool) -> dict[str, int]:
    return {e.address: e.in_flight for e in pool.endpoints}


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def _run(scenario: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(scenario(), timeout=5))


def test_a_trainer_takes_as_many_jobs_as_it_groups_and_no_more():
    async def scenario() -> None:
        pool = _pool(3)
        jobs = _Holder(pool)
        for _ in range(5):
            jobs.start()
        await _settle()
        assert jobs.got == ["t0"] * 3
        assert _in_flight(pool) == {"t0": 3}
        await jobs.finish()
        assert jobs.got == ["t0"] * 5
        assert _in_flight(pool) == {"t0": 0}

    _run(scenario)


def test_a_trainer_that_reports_no_group_size_takes_one_job():
    async def scenario() -> None:
        pool = _pool(0)
        jobs = _Holder(pool)
        jobs.start()
        jobs.start()
        await _settle()
        assert _in_flight(pool) == {"t0": 1}
        await jobs.finish()

    _run(scenario)


def test_concurrent_jobs_spread_over_two_trainers():
    async def scenario() -> None:
        pool = _pool(2, 2)
        jobs = _Holder(pool)
        jobs.start()
        jobs.start()
        await _settle()
        assert sorted(jobs.got) == ["t0", "t1"]
        jobs.start()
        jobs.start()
        await _settle()
        assert _in_flight(pool) == {"t0": 2, "t1": 2}
        await jobs.finish()

    _run(scenario)


def test_trainers_of_different_group_sizes_fill_in_proportion():
    async def scenario() -> None:
        pool = _pool(4, 1)
        jobs = _Holder(pool)
        for _ in range(5):
            jobs.start()
        await _settle()
        assert _in_flight(pool) == {"t0": 4, "t1": 1}
        assert jobs.got[:2] == ["t0", "t1"]  # the second job goes to the idle trainer, not the bigger one
        await jobs.finish()

    _run(scenario)


def test_jobs_one_after_another_alternate_trainers():
    async def scenario() -> None:
        pool = _pool(2, 2)
        used = []
        for _ in range(4):
            async with pool.acquire() as endpoint:
                used.append(endpoint.address)
        assert used == ["t0", "t1", "t0", "t1"]

    _run(scenario)


def test_a_retry_waits_for_another_trainer_rather_than_the_one_that_failed():
    async def scenario() -> None:
        pool = _pool(2, 2)
        for _ in range(3):
            async with pool.acquire(avoid="t0") as endpoint:
                assert endpoint.address == "t1"
        jobs = _Holder(pool)
        first = jobs.start(avoid="t0")
        jobs.start(avoid="t0")
        waiting = jobs.start(avoid="t0")  # t1 is full: it waits for t1's slot instead of retrying t0
        await _settle()
        assert jobs.got == ["t1", "t1"] and not jobs.tasks[waiting].done()
        assert _in_flight(pool) == {"t0": 0, "t1": 2}
        jobs.release(first)
        await _settle()
        assert jobs.got == ["t1", "t1", "t1"]
        await jobs.finish()

    _run(scenario)


def test_the_only_trainer_is_retried_even_though_it_failed():
    async def scenario() -> None:
        pool = _pool(1)
        pool.failed(pool.endpoints[0])
        async with pool.acquire(avoid="t0") as endpoint:
            assert endpoint.address == "t0"

    _run(scenario)


def test_a_trainer_that_failed_lately_gets_no_new_job_until_its_cooldown_ends():
    async def scenario() -> None:
        pool = _pool(1, 1)
        down = pool.endpoints[0]
        pool.failed(down)
        jobs = _Holder(pool)
        first = jobs.start()
        second = jobs.start()  # t0 has a free slot, but it failed lately and t1 is there: wait for t1
        await _settle()
        assert jobs.got == ["t1"] and not jobs.tasks[second].done()
        jobs.release(first)
        await _settle()
        assert jobs.got == ["t1", "t1"]
        await jobs.finish()
        # Half-open: once the cooldown has passed, a job may try it again; a success clears the mark.
        down.failed_at -= pool.cooldown
        assert {e.address for e in [pool._choose(""), pool._choose("")]} == {"t0", "t1"}
        pool.failed(down)
        pool.observed(down, None)
        assert down.failed_at is None

    _run(scenario)


def test_when_every_trainer_failed_lately_any_of_them_is_used():
    async def scenario() -> None:
        pool = _pool(1, 1)
        for endpoint in pool.endpoints:
            pool.failed(endpoint)
        async with pool.acquire(avoid="t0") as endpoint:
            assert endpoint.address == "t1"  # the one that failed last is still avoided first
        async with pool.acquire() as endpoint:
            assert endpoint.address in {"t0", "t1"}

    _run(scenario)


def test_a_waiting_job_wakes_when_a_slot_frees():
    async def scenario() -> None:
        pool = _pool(1, 1)
        jobs = _Holder(pool)
        first, _second = jobs.start(), jobs.start()
        waiting = jobs.start()
        await _settle()
        assert len(jobs.got) == 2
        assert not jobs.tasks[waiting].done()
        jobs.release(first)
        await _settle()
        assert jobs.got[2] == jobs.got[0]  # the freed trainer
        assert _in_flight(pool) == {"t0": 1, "t1": 1}
        await jobs.finish()
        assert _in_flight(pool) == {"t0": 0, "t1": 0}

    _run(scenario)


def test_a_cancelled_waiter_holds_no_slot():
    async def scenario() -> None:
        pool = _pool(1)
        jobs = _Holder(pool)
        first = jobs.start()
        jobs.start()
        await _settle()
        jobs.tasks[1].cancel()
        await _settle()
        jobs.release(first)
        await asyncio.gather(jobs.tasks[0], return_exceptions=True)
        assert _in_flight(pool) == {"t0": 0}
        async with pool.acquire() as endpoint:
            assert endpoint.in_flight == 1

    _run(scenario)


def test_a_smaller_capacity_takes_effect_as_running_jobs_finish():
    async def scenario() -> None:
        pool = _pool(3)
        jobs = _Holder(pool)
        running = [jobs.start() for _ in range(3)]
        waiting = jobs.start()
        await _settle()
        pool.set_capacity("t0", 1)  # the trainer restarted with a smaller group
        await _settle()
        assert _in_flight(pool) == {"t0": 3}  # running jobs keep their slots
        jobs.release(running[0])
        jobs.release(running[1])
        await _settle()
        assert _in_flight(pool) == {"t0": 1}
        assert not jobs.tasks[waiting].done()
        jobs.release(running[2])
        await _settle()
        assert _in_flight(pool) == {"t0": 1}  # now the waiting job
        await jobs.finish()
        assert _in_flight(pool) == {"t0": 0}

    _run(scenario)


def test_a_larger_capacity_wakes_waiting_jobs_at_once():
    async def scenario() -> None:
        pool = _pool(1)
        jobs = _Holder(pool)
        for _ in range(3):
            jobs.start()
        await _settle()
        assert _in_flight(pool) == {"t0": 1}
        pool.set_capacity("t0", 4)
        await _settle()
        assert _in_flight(pool) == {"t0": 3}
        await jobs.finish()
        assert _in_flight(pool) == {"t0": 0}

    _run(scenario)


# ---- torch threads of the services on one machine -----------------------------------------------------


@pytest.mark.parametrize("cores", [1, 2, 3, 4, 7, 8, 16, 64])
@pytest.mark.parametrize("passages", [1, 2, 3, 5])
def test_services_that_work_at_once_never_ask_for_more_threads_than_cores(cores, passages):
    threads = torch_threads(cores, passages)
    assert set(threads) == {"generator", "trainer", "evaluator"}
    assert all(n >= 1 for n in threads.values())
    busy = min(passages, 3)
    # Any `busy` of them may work together; the trainer takes the remainder of the split.
    assert threads["trainer"] >= threads["generator"] == threads["evaluator"]
    if cores >= busy:
        assert threads["trainer"] + (busy - 1) * threads["generator"] == cores


def test_one_passage_at_a_time_gives_every_service_every_core():
    assert torch_threads(8, 1) == {"generator": 8, "trainer": 8, "evaluator": 8}


def test_two_passages_split_the_cores_in_two_with_the_odd_one_to_the_trainer():
    assert torch_threads(8, 2) == {"generator": 4, "trainer": 4, "evaluator": 4}
    assert torch_threads(7, 2) == {"generator": 3, "trainer": 4, "evaluator": 3}


def test_the_local_stack_gives_each_model_service_its_threads(monkeypatch, tmp_path):
    monkeypatch.delenv(TORCH_THREADS_ENV, raising=False)
    monkeypatch.setenv("SEAL_COORDINATOR_MAX_CONCURRENT_PASSAGES", "2")
    monkeypatch.setattr("services.coordinator.cli.launcher.usable_cores", lambda: 9)
    stack = LocalStack(tmp_path)
    assert stack.service_env("trainer")[TORCH_THREADS_ENV] == "5"
    assert stack.service_env("generator")[TORCH_THREADS_ENV] == "4"
    assert stack.service_env("evaluator")[TORCH_THREADS_ENV] == "4"
    assert TORCH_THREADS_ENV not in stack.service_env("coordinator")  # it imports no torch


def test_the_local_stack_follows_the_passages_its_coordinator_gets(monkeypatch, tmp_path):
    monkeypatch.delenv(TORCH_THREADS_ENV, raising=False)
    monkeypatch.setattr("services.coordinator.cli.launcher.usable_cores", lambda: 8)
    stack = LocalStack(tmp_path, extra_env={"SEAL_COORDINATOR_MAX_CONCURRENT_PASSAGES": "1"})
    assert stack.service_env("trainer")[TORCH_THREADS_ENV] == "8"


@pytest.mark.parametrize("where", ["environment", "extra_env"])
def test_threads_the_user_chose_win_for_every_service(monkeypatch, tmp_path, where):
    monkeypatch.delenv(TORCH_THREADS_ENV, raising=False)
    if where == "environment":
        monkeypatch.setenv(TORCH_THREADS_ENV, "3")
        stack = LocalStack(tmp_path)
    else:
        stack = LocalStack(tmp_path, extra_env={TORCH_THREADS_ENV: "3"})
    for service in ("generator", "trainer", "evaluator"):
        assert stack.service_env(service)[TORCH_THREADS_ENV] == "3"


def test_a_job_waiting_behind_a_busy_trainer_tries_the_failed_one_when_its_cooldown_ends():
    async def scenario() -> None:
        pool = _pool(1, 1)
        pool.cooldown = 0.05
        jobs = _Holder(pool)
        jobs.start(avoid="t0")  # t1, held
        await _settle()
        pool.failed(pool.endpoints[0])
        waiting = jobs.start()
        await _settle()
        assert not jobs.tasks[waiting].done() and jobs.got == ["t1"]
        await asyncio.sleep(0.2)  # t1 is still busy; the cooldown's end wakes the waiter for t0
        assert jobs.got == ["t1", "t0"]
        await jobs.finish()

    _run(scenario)


def test_only_the_trainer_being_unreachable_starts_a_cooldown():
    pool = _pool(1, 1)
    endpoint = pool.endpoints[0]
    for error in (
        rpc_error(grpc.StatusCode.UNAVAILABLE, "its store is away", store_outage=True),
        rpc_error(grpc.StatusCode.INVALID_ARGUMENT, "bad dataset"),
    ):
        pool.observed(endpoint, error)
        assert endpoint.failed_at is None
    pool.observed(endpoint, rpc_error(grpc.StatusCode.UNAVAILABLE, "connection refused"))
    assert endpoint.failed_at is not None
    pool.observed(endpoint, None)
    assert endpoint.failed_at is None


def test_a_trainer_that_missed_its_deadline_is_cooled_down_like_an_unreachable_one():
    """A frozen trainer accepts the call and never answers: without a cooldown the next job would go to it
    and wait out a whole deadline too (tests/service/test_run_service_faults.py shows it on a real one)."""
    pool = _pool(2, 1)
    frozen, healthy = pool.endpoints
    pool.observed(frozen, rpc_error(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded"))
    assert frozen.failed_at is not None
    assert pool._choose("") is healthy
