"""The trainer's group batcher: jobs that arrive together train together, a late one joins the next group,
one job's failure stays its own."""

from __future__ import annotations

import asyncio

import pytest

from services.trainer.grouping import GroupBatcher


def test_concurrent_jobs_form_groups_up_to_the_limit_and_late_ones_form_the_next():
    groups: list[list[int]] = []

    async def run_group(jobs: list[int]) -> list[object]:
        groups.append(list(jobs))
        await asyncio.sleep(0.2)  # training
        return [job * 10 if job != 3 else ValueError("bad job 3") for job in jobs]

    async def scenario() -> list[object]:
        batcher = GroupBatcher(run_group, max_group_size=3, window_seconds=0.1)
        first = [asyncio.ensure_future(batcher.submit(j)) for j in (1, 2, 3, 4)]
        await asyncio.sleep(0.05)  # while group one trains: these wait and go together next
        late = [asyncio.ensure_future(batcher.submit(j)) for j in (5, 6)]
        return await asyncio.gather(*first, *late, return_exceptions=True)

    results = asyncio.run(scenario())
    assert groups == [[1, 2, 3], [4, 5, 6]]
    assert results[:2] == [10, 20] and results[3:] == [40, 50, 60]
    assert isinstance(results[2], ValueError) and "bad job 3" in str(results[2])


def test_a_lone_job_waits_only_the_window():
    async def run_group(jobs: list[int]) -> list[object]:
        return list(jobs)

    async def scenario() -> float:
        batcher = GroupBatcher(run_group, max_group_size=8, window_seconds=0.3)
        loop = asyncio.get_running_loop()
        started = loop.time()
        assert await batcher.submit(7) == 7
        return loop.time() - started

    assert 0.25 <= asyncio.run(scenario()) < 2.0


def test_a_group_that_fails_as_a_whole_fails_each_of_its_jobs_and_the_next_group_runs():
    calls = 0

    async def run_group(jobs: list[int]) -> list[object]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("out of memory")
        return list(jobs)

    async def scenario() -> list[object]:
        batcher = GroupBatcher(run_group, max_group_size=2, window_seconds=0.05)
        jobs = [asyncio.ensure_future(batcher.submit(j)) for j in (1, 2, 3)]
        return await asyncio.gather(*jobs, return_exceptions=True)

    results = asyncio.run(scenario())
    assert [type(r) for r in results[:2]] == [RuntimeError, RuntimeError] and results[2] == 3


def test_group_size_must_be_positive():
    with pytest.raises(ValueError):
        GroupBatcher(lambda jobs: None, max_group_size=0, window_seconds=0.1)  # type: ignore[arg-type]


def test_a_job_cancelled_while_it_waits_never_trains_and_its_companions_do():
    groups: list[list[int]] = []

    async def run_group(jobs: list[int]) -> list[object]:
        groups.append(list(jobs))
        return list(jobs)

    async def scenario() -> list[object]:
        batcher = GroupBatcher(run_group, max_group_size=4, window_seconds=0.2)
        jobs = [asyncio.ensure_future(batcher.submit(j)) for j in (1, 2, 3)]
        await asyncio.sleep(0.05)  # all three wait for the window to close
        jobs[1].cancel()
        return await asyncio.gather(*jobs, return_exceptions=True)

    results = asyncio.run(scenario())
    assert groups == [[1, 3]]
    assert results[0] == 1 and isinstance(results[1], asyncio.CancelledError) and results[2] == 3


def test_when_every_waiting_job_is_cancelled_no_group_runs():
    groups: list[list[int]] = []

    async def run_group(jobs: list[int]) -> list[object]:
        groups.append(list(jobs))
        return list(jobs)

    async def scenario() -> object:
        batcher = GroupBatcher(run_group, max_group_size=4, window_seconds=0.1)
        job = asyncio.ensure_future(batcher.submit(1))
        await asyncio.sleep(0.02)
        job.cancel()
        await asyncio.sleep(0.3)  # past the window
        return await batcher.submit(2)

    assert asyncio.run(scenario()) == 2 and groups == [[2]]
