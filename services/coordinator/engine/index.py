"""An index of the store's runs: one summary per run, so a coordinator starts, lists and watches without reading
every run's records.

Layout, every object write-once (the store's rule):
- `index/runs/log/<YYYYMMDD-HH>/<ns>-<run id>.json`: one entry per status change of a run (its summary as
  `GET /v1/runs` shows it, or `deleted`), `<ns>` the writer's clock; a folder per hour, so a reader lists
  only the hours it has not read;
- `index/runs/snapshots/<ns>.json`: every run's newest entry, as of `through` (the clock of the newest entry
  it covers); written at start-up when the log after the newest snapshot is long or the index had to be
  rebuilt; the two newest are kept.

Reading (`load`): the newest snapshot, then the log's hours from its `through` on (less `MARGIN_NS`, for
writers whose entries landed late); per run the entry with the greatest key wins, so reading an entry twice,
or late, changes nothing. The lease watch reads only the newest hours (`poll`).

Entries that end a run are written after the record that ends it (manifest, cancel, failure event), and one
that makes a run unfinished again (a resume) before its record: a crash in between leaves an index that
calls the run unfinished, which the lease watch then reads from its records and corrects, never the
reverse. A store without an index (written by an older seal-lab), or runs missing from it, are rebuilt from
the records at start-up (`missing`): one listing of the run folders, not of their records. An entry an older
seal-lab wrote lacks the summary's newer fields (a finished run's `headline`): they read back as their defaults,
and the manager fills the headline in memory when it reads that run (`RunManager.find`).
"""

from __future__ import annotations

import bisect
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ValidationError

from seal_lab.errors import CorruptObject, NotFound
from seal_lab.store import ObjectStore

from ..run.schemas import RunSummary
from .records import RUNS_PREFIX

log = logging.getLogger(__name__)

INDEX_PREFIX = "index/runs"
LOG_PREFIX = f"{INDEX_PREFIX}/log"
SNAPSHOT_PREFIX = f"{INDEX_PREFIX}/snapshots"
#: Entries read again behind the newest one seen: writers' clocks differ, and a write lands late.
MARGIN_NS = 120 * 10**9
#: A start-up that read more log entries than this after the newest snapshot writes a new one.
SNAPSHOT_AFTER = 200
_HOUR_NS = 3600 * 10**9
FINISHED = frozenset({"succeeded", "completed_with_errors", "failed", "cancelled"})


@dataclass(frozen=True)
class Entry:
    """A run's newest index entry: its summary, or None once the run was deleted."""

    key: str
    summary: RunSummary | None
    unrunnable: str = ""

    @property
    def finished(self) -> bool:
        return self.summary is None or self.summary.status in FINISHED or bool(self.unrunnable)


def _hour(ns: int) -> str:
    return time.strftime("%Y%m%d-%H", time.gmtime(ns // 10**9))


def _ns(key: str) -> int:
    """The clock in an entry's key (0 for a key that is not an entry's)."""
    name = key.rsplit("/", 1)[-1]
    head = name.split("-", 1)[0]
    return int(head) if head.isdigit() else 0


def _order(key: str) -> tuple[int, str]:
    """Entries compare by their writer's clock, then key."""
    return (_ns(key), key)


def _hours(start_ns: int, end_ns: int) -> list[str]:
    """The hour folders from the one holding `start_ns` to the one holding `end_ns`."""
    hours = []
    ns = start_ns - start_ns % _HOUR_NS
    while ns <= end_ns:
        hours.append(_hour(ns))
        ns += _HOUR_NS
    return hours


def _entry(key: str, record: Any) -> tuple[str, Entry] | None:
    """A log entry or a snapshot's line read back; None for anything else (skipped, with a warning)."""
    try:
        run_id = record["run_id"]
        summary = None if record.get("deleted") else RunSummary.model_validate(record["summary"])
        return run_id, Entry(key, summary, str(record.get("unrunnable", "")))
    except (KeyError, TypeError, ValidationError) as exc:
        log.warning("index entry %s unreadable (%s); skipped", key, type(exc).__name__)
        return None


class IndexRecord(BaseModel):
    """One log entry (and one line of a snapshot, with its `key`): the run's summary, or its deletion."""

    run_id: str
    summary: RunSummary | None = None
    unrunnable: str = ""
    deleted: bool = False


def entry_record(run_id: str, summary: RunSummary | None, unrunnable: str = "") -> IndexRecord:
    if summary is None:
        return IndexRecord(run_id=run_id, deleted=True)
    return IndexRecord(run_id=run_id, summary=summary, unrunnable=unrunnable)


@dataclass
class Loaded:
    """What `RunIndex.load` read (in a thread): applied on the event loop by `RunIndex.adopt`."""

    entries: dict[str, Entry]
    tail: int
    seen: dict[str, int]
    snapshots: list[str] = field(default_factory=list)


class RunIndex:
    """The index in memory (every run's newest entry) and its reads and writes in the store.

    The blocking methods (`load`, `missing`, `poll`, `snapshot`) return what they read, and change nothing
    here: the event loop applies it (`adopt`, `apply`), so a request never sees the entries change under it.
    """

    def __init__(self, store: ObjectStore) -> None:
        self.store = store
        self.entries: dict[str, Entry] = {}
        #: (created_at, run id) of every run with a summary, oldest first: pages are read from it in order.
        self._order: list[tuple[float, str]] = []
        self._seen: dict[str, int] = {}  # log keys read within the margin -> their clock
        self._watermark_ns = 0
        self._last_ns = 0

    # ---- in memory -------------------------------------------------------------------------------------

    def summaries(self) -> Iterator[RunSummary]:
        for entry in self.entries.values():
            if entry.summary is not None:
                yield entry.summary

    def get(self, run_id: str) -> Entry | None:
        entry = self.entries.get(run_id)
        return entry if entry is not None and entry.summary is not None else None

    def newest_first(self, before: tuple[float, str] | None = None) -> Iterator[str]:
        """Run ids, newest first (by creation, then id), those strictly before `before` only: a page costs
        its own length, not the number of runs. Read it through before the entries change (no await)."""
        end = bisect.bisect_left(self._order, before) if before is not None else len(self._order)
        for at in range(end - 1, -1, -1):
            yield self._order[at][1]

    def _reorder(self, run_id: str, old: Entry | None, new: Entry | None) -> None:
        if old is not None and old.summary is not None:
            key = (old.summary.created_at, run_id)
            at = bisect.bisect_left(self._order, key)
            if at < len(self._order) and self._order[at] == key:
                del self._order[at]
        if new is not None and new.summary is not None:
            bisect.insort(self._order, (new.summary.created_at, run_id))

    def unfinished(self) -> list[str]:
        return [run_id for run_id, entry in self.entries.items() if not entry.finished]

    def apply(self, run_id: str, entry: Entry) -> bool:
        """Keep `entry` if it is newer than the run's; whether it was."""
        known = self.entries.get(run_id)
        if known is not None and _order(known.key) >= _order(entry.key):
            return False
        self.entries[run_id] = entry
        self._reorder(run_id, known, entry)
        return True

    def note(self, run_id: str, summary: RunSummary) -> None:
        """Change what the run's summary shows here only (`current`: who runs it), not in the store."""
        entry = self.entries.get(run_id)
        if entry is not None and entry.summary is not None:
            self.entries[run_id] = Entry(entry.key, summary, entry.unrunnable)

    def entry(self, run_id: str, summary: RunSummary | None, unrunnable: str = "") -> tuple[str, IndexRecord]:
        """A new log entry for the run (applied here at once); the caller writes it (key, record)."""
        now = max(time.time_ns(), self._last_ns + 1)
        self._last_ns = now
        key = f"{LOG_PREFIX}/{_hour(now)}/{now:020d}-{run_id}.json"
        self.apply(run_id, Entry(key, summary, unrunnable))
        return key, entry_record(run_id, summary, unrunnable)

    def rebuilt(self, run_id: str, summary: RunSummary, unrunnable: str = "") -> None:
        """A run read from its records (it had no entry): known here; the next snapshot stores it."""
        now = max(time.time_ns(), self._last_ns + 1)
        self._last_ns = now
        self.apply(run_id, Entry(f"{now:020d}-{run_id}", summary, unrunnable))

    def forget(self, run_id: str) -> None:
        self._reorder(run_id, self.entries.pop(run_id, None), None)

    def adopt(self, loaded: Loaded) -> None:
        self.entries = loaded.entries
        self._order = sorted(
            (entry.summary.created_at, run_id)
            for run_id, entry in self.entries.items()
            if entry.summary is not None
        )
        self._seen = loaded.seen
        self._watermark_ns = min(loaded.seen.values(), default=time.time_ns() - MARGIN_NS)

    # ---- the store (blocking) --------------------------------------------------------------------------

    def load(self) -> Loaded:
        """The newest snapshot and the log after it."""
        started = time.time_ns()
        snapshots = self.store.list_keys(f"{SNAPSHOT_PREFIX}/")
        entries: dict[str, Entry] = {}
        through = 0
        for key in reversed(snapshots):  # the newest readable one
            try:
                snapshot = self.store.get_json(key)
                runs = snapshot["runs"]
                through = int(snapshot["through"])
            except (NotFound, CorruptObject, KeyError, TypeError, ValueError):
                log.warning("index snapshot %s unreadable; trying an older one", key)
                continue
            for record in runs:
                read = _entry(str(record.get("key", "")), record)
                if read is not None:
                    entries[read[0]] = read[1]
            break
        start = max(0, through - MARGIN_NS)
        # The hours that exist from the snapshot's on (one listing of the log's folders, not of their entries).
        hours = [h for h in self.store.list_folders(f"{LOG_PREFIX}/") if h >= _hour(start)]
        seen: dict[str, int] = {}
        tail = 0
        for hour in hours:
            for key in self.store.list_keys(f"{LOG_PREFIX}/{hour}/"):
                ns = _ns(key)
                if ns < start:
                    continue
                read = self._read(key)
                if read is None:
                    continue
                tail += 1
                run_id, entry = read
                known = entries.get(run_id)
                if known is None or _order(known.key) < _order(entry.key):
                    entries[run_id] = entry
                if ns >= started - MARGIN_NS:
                    seen[key] = ns
        return Loaded(entries, tail, seen, snapshots)

    def _read(self, key: str) -> tuple[str, Entry] | None:
        try:
            record = self.store.get_json(key)
        except (NotFound, CorruptObject):
            log.warning("index entry %s unreadable; skipped", key)
            return None
        return _entry(key, record)

    def run_folders(self) -> set[str]:
        """The runs' folders in the store (one listing of `runs/`, not of their records): compared with the
        entries at start-up, to find runs to rebuild and entries whose run is gone."""
        return set(self.store.list_folders(f"{RUNS_PREFIX}/"))

    def poll(self) -> list[tuple[str, Entry]]:
        """The log entries written since the last poll (by any coordinator), oldest first; `apply` them."""
        now = time.time_ns()
        start = self._watermark_ns or now - MARGIN_NS
        new: list[tuple[str, Entry]] = []
        for hour in _hours(start, now + MARGIN_NS):
            for key in self.store.list_keys(f"{LOG_PREFIX}/{hour}/"):
                ns = _ns(key)
                if ns < start or key in self._seen:
                    continue
                self._seen[key] = ns
                read = self._read(key)
                if read is not None:
                    new.append(read)
        self._watermark_ns = now - MARGIN_NS
        self._seen = {k: ns for k, ns in self._seen.items() if ns >= self._watermark_ns}
        return sorted(new, key=lambda item: item[1].key)

    def snapshot(self, entries: dict[str, Entry], old: list[str]) -> str:
        """Write `entries` as a snapshot; delete all but the newest two. Returns its key."""
        through = max((_ns(e.key) for e in entries.values()), default=time.time_ns())
        key = f"{SNAPSHOT_PREFIX}/{time.time_ns():020d}.json"
        runs = [
            {"key": entry.key, **entry_record(run_id, entry.summary, entry.unrunnable).model_dump()}
            for run_id, entry in sorted(entries.items())
        ]
        self.store.put_json(key, {"through": through, "runs": runs})
        for stale in old[:-1]:
            self.store.delete(stale)
        return key
