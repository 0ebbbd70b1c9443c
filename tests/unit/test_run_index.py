"""The store's run index (engine/index.py): start-up reads it instead of every run, an old store without one is
rebuilt from its records, the lease watch never lists `runs/`, finished runs leave memory and are read back
on demand, and the event loop stays responsive while the watch runs over 1,000 runs."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import time
from pathlib import Path

from seal_lab.store.local import LocalStore
from services.coordinator.engine.index import INDEX_PREFIX, LOG_PREFIX, SNAPSHOT_PREFIX
from services.coordinator.engine.manager import FINISHED_CACHE, RunManager
from services.coordinator.engine.records import MANIFEST, run_key
from services.coordinator.run.schemas import RunHeadline
from tests.unit.fake_services import FakeClients
from tests.unit.test_orchestrator import REQUEST, run_to_end, settings, until


class CountingStore(LocalStore):
    """A local store that remembers what was listed, and how many records were read."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.listed: list[str] = []
        self.reads = 0
        self.read_keys: list[str] = []

    def list_keys(self, prefix: str) -> list[str]:
        self.listed.append(prefix)
        return super().list_keys(prefix)

    def list_folders(self, prefix: str, start_after: str = "", limit: int | None = None) -> list[str]:
        self.listed.append(f"folders:{prefix}")
        return super().list_folders(prefix, start_after, limit)

    def get_bytes(self, key: str) -> bytes:
        self.reads += 1
        self.read_keys.append(key)
        return super().get_bytes(key)


def finished_run(root: Path, config) -> str:
    """One run made over the fake services, run to its end; its id."""

    async def main() -> str:
        manager = RunManager(LocalStore(root), FakeClients(config.trainer_addresses), config)
        await manager.start()
        try:
            run = await run_to_end(manager, await manager.create(REQUEST))
            assert run.status == "succeeded"
            return run.id
        finally:
            await manager.shutdown()

    return asyncio.run(main())


def copies_of(root: Path, run_id: str, count: int) -> list[str]:
    """`count` more finished runs: hard links to the run's files under new ids (cheap at 1,000)."""
    ids = []
    source = root / "runs" / run_id
    for i in range(count):
        new_id = f"{run_id}-{i:05d}"
        target = root / "runs" / new_id
        shutil.copytree(source, target, copy_function=os.link)
        ids.append(new_id)
    return ids


def strip_headlines(root: Path) -> int:
    """Rewrite the index's log entries and snapshots without the summaries' `headline`, as a coordinator
    before it wrote them; how many summaries had one."""
    stripped = 0
    for path in sorted((root / INDEX_PREFIX).rglob("*.json")):
        record = json.loads(path.read_text())
        for line in record.get("runs", [record]):  # a snapshot's lines, or the entry itself
            if isinstance(line.get("summary"), dict) and "headline" in line["summary"]:
                stripped += line["summary"].pop("headline") is not None
        path.write_text(json.dumps(record))
    return stripped


def _start(store, config) -> RunManager:
    manager = RunManager(store, FakeClients(config.trainer_addresses), config)
    return manager


def test_a_restart_reads_the_index_not_every_run_and_finished_runs_stay_on_disk(tmp_path):
    config = settings()
    run_id = finished_run(tmp_path / "store", config)
    copies = copies_of(tmp_path / "store", run_id, FINISHED_CACHE + 4)

    async def main() -> None:
        # First start over runs the index lacks (the copies): rebuilt from their records, then a snapshot.
        first = _start(LocalStore(tmp_path / "store"), config)
        await first.start()
        await first.shutdown()
        assert (tmp_path / "store" / SNAPSHOT_PREFIX).is_dir()

        store = CountingStore(tmp_path / "store")
        manager = _start(store, config)
        await manager.start()
        try:
            assert manager.ready
            assert {s.id for s in manager.summaries()} == {run_id, *copies}
            assert all(s.status == "succeeded" for s in manager.summaries())
            assert manager.runs == {}  # finished: summaries only
            # No run's records were listed or read to start: the index, and one listing of the run folders.
            assert not [p for p in store.listed if p.startswith("runs/")]
            assert "folders:runs/" in store.listed
            assert store.reads < 5
            run = await manager.find(copies[3])
            assert run.status == "succeeded" and run.results is not None and run.jobs
            assert run.summary() == next(s for s in manager.summaries() if s.id == copies[3])
            for each in copies:
                await manager.find(each)
            assert len(manager._finished) == FINISHED_CACHE  # a bounded cache, not every run read
        finally:
            await manager.shutdown()

    asyncio.run(main())


def test_an_old_store_without_an_index_loads_and_gets_one(tmp_path):
    config = settings()
    run_id = finished_run(tmp_path / "store", config)
    shutil.rmtree(tmp_path / "store" / "index")

    async def main() -> None:
        manager = _start(LocalStore(tmp_path / "store"), config)
        await manager.start()
        try:
            assert [s.id for s in manager.summaries()] == [run_id]
            run = await manager.find(run_id)
            assert run.status == "succeeded" and run.results is not None
        finally:
            await manager.shutdown()
        assert list((tmp_path / "store" / SNAPSHOT_PREFIX).iterdir())

    asyncio.run(main())


def test_a_finished_runs_headline_is_indexed_and_survives_restarts_without_reading_the_run(tmp_path):
    config = settings()
    run_id = finished_run(tmp_path / "store", config)

    async def restart() -> tuple[list, RunHeadline, list[str]]:
        store = CountingStore(tmp_path / "store")
        manager = _start(store, config)
        await manager.start()
        try:
            summaries = list(manager.summaries())
            reads = list(store.read_keys)
            run = await manager.find(run_id)  # now the run's records, for what the headline must be
            assert run.results is not None
            return summaries, RunHeadline.of(run.results), reads
        finally:
            await manager.shutdown()

    # The first restart reads the log (and writes a snapshot); the next one reads the snapshot.
    for source in ("log", "snapshot"):
        (summary,), expected, reads = asyncio.run(restart())
        assert reads and all(key.startswith(f"{INDEX_PREFIX}/") for key in reads), (source, reads)
        assert summary.id == run_id and summary.headline == expected, source
        assert expected.metric == "f1" and expected.gain is not None and expected.heldout is None
    assert list((tmp_path / "store" / SNAPSHOT_PREFIX).iterdir())
    assert any(key.startswith(f"{SNAPSHOT_PREFIX}/") for key in reads)


def test_index_records_without_a_headline_still_load_and_reading_the_run_fills_it_in(tmp_path):
    config = settings()
    run_id = finished_run(tmp_path / "store", config)

    async def main() -> None:
        first = _start(LocalStore(tmp_path / "store"), config)  # writes a snapshot: both kinds of record
        await first.start()
        (before,) = list(first.summaries())
        await first.shutdown()
        assert before.headline is not None
        assert strip_headlines(tmp_path / "store") >= 2  # the snapshot's line and the log's entries

        manager = _start(LocalStore(tmp_path / "store"), config)
        await manager.start()
        try:
            (old,) = list(manager.summaries())
            assert old.headline is None and "headline" not in old.model_fields_set
            assert old == before.model_copy(update={"headline": None})  # everything else as it was
            run = await manager.find(run_id)
            (filled,) = list(manager.summaries())
            assert filled.headline == before.headline == RunHeadline.of(run.results)
        finally:
            await manager.shutdown()

    asyncio.run(main())


def test_a_deleted_run_stays_gone_after_a_restart(tmp_path):
    config = settings()
    run_id = finished_run(tmp_path / "store", config)

    async def main() -> None:
        manager = _start(LocalStore(tmp_path / "store"), config)
        await manager.start()
        await manager.delete(run_id)
        await manager.shutdown()
        again = _start(LocalStore(tmp_path / "store"), config)
        await again.start()
        try:
            assert list(again.summaries()) == []
        finally:
            await again.shutdown()

    asyncio.run(main())


def test_the_lease_watch_reads_the_index_and_never_lists_the_runs(tmp_path):
    """A run another coordinator creates shows up from its index entry, and its finish too; idle, the watch
    lists the index's newest hours only, never runs/."""
    config = settings(lease_ttl_seconds=0.3)
    store = CountingStore(tmp_path / "store")

    async def main() -> None:
        watcher = _start(store, config)
        await watcher.start()
        other = _start(LocalStore(tmp_path / "store"), settings(resume_unfinished_runs=False))
        await other.start()
        try:
            run = await run_to_end(other, await other.create(REQUEST))
            assert run.status == "succeeded"
            await until(lambda: any(s.id == run.id and s.status == "succeeded" for s in watcher.summaries()))
            await asyncio.sleep(0.2)  # the tick that saw it is over (it may have tried the run's lease)
            store.listed.clear()
            await asyncio.sleep(0.5)  # several more ticks, idle
            assert store.listed and all(p.startswith(f"{LOG_PREFIX}/") for p in store.listed), store.listed
            assert run.id not in watcher.runs
            assert (await watcher.find(run.id)).results is not None
        finally:
            await other.shutdown()
            await watcher.shutdown()

    asyncio.run(main())


def test_an_index_that_calls_a_finished_run_unfinished_is_corrected_by_the_watch(tmp_path):
    """A crash between a run's manifest and its index entry: the watch reads the run, and the index says
    how it ended."""
    config = settings(lease_ttl_seconds=0.3)
    run_id = finished_run(tmp_path / "store", config)
    store_root = tmp_path / "store"
    for entry in sorted((store_root / LOG_PREFIX).rglob("*.json")):
        if b'"succeeded"' in entry.read_bytes():
            entry.unlink()  # the finishing entry was never written
    shutil.rmtree(store_root / SNAPSHOT_PREFIX, ignore_errors=True)

    async def main() -> None:
        manager = _start(LocalStore(store_root), config)
        await manager.start()
        try:
            await until(lambda: [s.status for s in manager.summaries()] == ["succeeded"])
            assert manager.runs == {}
        finally:
            await manager.shutdown()
        assert LocalStore(store_root).exists(run_key(run_id, MANIFEST))

    asyncio.run(main())


def test_the_event_loop_stays_responsive_while_the_watch_runs_over_1000_runs(tmp_path):
    config = settings(lease_ttl_seconds=0.15)  # the watch every 50 ms
    run_id = finished_run(tmp_path / "store", config)
    copies_of(tmp_path / "store", run_id, 999)

    async def main() -> float:
        first = _start(LocalStore(tmp_path / "store"), config)  # rebuilds the index once
        await first.start()
        await first.shutdown()
        manager = _start(LocalStore(tmp_path / "store"), config)
        await manager.start()
        try:
            assert sum(1 for _ in manager.summaries()) == 1000
            worst = 0.0
            deadline = time.monotonic() + 2.0
            while time.monotonic() < deadline:
                asked = time.monotonic()
                await asyncio.sleep(0.005)
                worst = max(worst, time.monotonic() - asked - 0.005)
                assert len(list(manager.summaries())) == 1000
            return worst
        finally:
            await manager.shutdown()

    worst = asyncio.run(main())
    assert worst < 0.1, f"the event loop froze for {worst * 1000:.0f} ms"


def test_the_index_pages_newest_first_from_a_token_without_reading_every_run(tmp_path):
    from services.coordinator.engine.index import RunIndex
    from services.coordinator.run.schemas import RunSummary

    def summary(run_id: str, created: float, status: str = "succeeded") -> RunSummary:
        return RunSummary(
            id=run_id,
            name="",
            status=status,
            created_at=created,
            updated_at=created,
            passages=1,
            jobs_total=1,
            jobs_done=1,
            jobs_failed=0,
            retries=0,
            current="",
            error="",
        )

    index = RunIndex(LocalStore(tmp_path))
    for i in range(5):
        index.entry(f"run-{i}", summary(f"run-{i}", float(i % 3)))
    assert list(index.newest_first()) == ["run-2", "run-4", "run-1", "run-3", "run-0"]
    assert list(index.newest_first((1.0, "run-3"))) == ["run-1", "run-3", "run-0"]
    index.entry("run-4", None)  # deleted
    index.forget("run-1")
    assert list(index.newest_first()) == ["run-2", "run-3", "run-0"]
    index.entry("run-3", summary("run-3", 0.0, "failed"))  # a later entry of the same run: in its place
    assert list(index.newest_first()) == ["run-2", "run-3", "run-0"]
    assert index.get("run-3").summary.status == "failed"
