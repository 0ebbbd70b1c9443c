"""One coordinator per run: a lease in the store, renewed while the run executes, taken over when it expires.

Several coordinators may share one bucket (the README's several-laptops layout). Each run has numbered lease
records, `runs/<id>/lease/<epoch>.json`, holding the owner and an expiry time. The newest epoch is the lease:
- to take a run, a coordinator creates the next epoch's record write-once (a conditional put the store
  enforces), so of two coordinators racing for a free or expired lease exactly one wins;
- the holder renews by rewriting its own epoch's record with a later expiry (nobody else writes that key);
  before each renewal it checks that no newer epoch exists, and stops the run if one does;
- a graceful stop releases the lease (expiry now), so another coordinator may take the run at once;
- a coordinator that restarts after a crash on the same host (or a restarted container, which keeps its
  hostname) takes its predecessor's runs at once: the default owner name is `host:pid:random`, and a lease
  of this host whose process is gone (or whose pid is now ours) protects nothing.
A holder that stalls longer than the lease lets another coordinator take over; its own next write of a job
record then collides with the new holder's write-once record, and it stops (see records.LeaseLost).
Expiry uses wall-clock time: coordinators sharing a store need clocks within a fraction of `ttl_seconds`.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import time
from dataclasses import dataclass

from pydantic import ValidationError

from seal_lab.errors import AlreadyExists, CorruptObject, NotFound
from seal_lab.store import ObjectStore

from ..run.records import LeaseRecord
from .records import LeaseLost, run_key

log = logging.getLogger(__name__)

_EPOCH_DIGITS = 10


@dataclass(frozen=True)
class Lease:
    run_id: str
    epoch: int
    owner: str

    @property
    def key(self) -> str:
        return lease_key(self.run_id, self.epoch)


def default_owner() -> str:
    """`host:pid:random`: unique per process, and tells a later process on the same host that it is gone."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


def _gone_from_this_host(owner: str) -> bool:
    """True when `owner` names a coordinator process of this host that no longer runs (a crash, a container
    restart). Names set by hand (SEAL_COORDINATOR_INSTANCE_ID) are never judged."""
    host, _, rest = owner.partition(":")
    pid_text, _, token = rest.partition(":")
    if host != socket.gethostname() or not pid_text.isdigit() or not token:
        return False
    pid = int(pid_text)
    if pid == os.getpid():  # our pid with another token: a previous process (pid 1 in a restarted container)
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False
    return False


def lease_key(run_id: str, epoch: int) -> str:
    return run_key(run_id, f"lease/{epoch:0{_EPOCH_DIGITS}d}.json")


class Leases:
    """Blocking lease operations (call them from a thread); `owner` names this coordinator process."""

    def __init__(self, store: ObjectStore, owner: str, ttl_seconds: float) -> None:
        self.store = store
        self.owner = owner
        self.ttl_seconds = ttl_seconds

    def _latest(self, run_id: str) -> tuple[int, LeaseRecord | None]:
        keys = self.store.list_keys(run_key(run_id, "lease/"))
        epochs = sorted(int(k.rsplit("/", 1)[1].removesuffix(".json")) for k in keys if _is_epoch(k))
        if not epochs:
            return 0, None
        # An unreadable lease (or one that is not a lease record) protects nothing: treat it as expired.
        try:
            record = LeaseRecord.model_validate(self.store.get_json(lease_key(run_id, epochs[-1])))
        except (CorruptObject, NotFound, ValidationError):
            record = None
        return epochs[-1], record

    def holder(self, run_id: str) -> str:
        """Who holds the run now ("" when nobody does)."""
        _, record = self._latest(run_id)
        if record is None or record.expired(time.time()):
            return ""
        return record.owner

    def first(self, run_id: str) -> Lease:
        """The lease of a run being created (epoch 1), taken before its spec exists; AlreadyExists if taken."""
        lease = Lease(run_id, 1, self.owner)
        self.store.put_json(lease.key, self._record(lease).model_dump())
        return lease

    def acquire(self, run_id: str) -> Lease | None:
        """Take the run if its lease is free, expired, released, or ours; None when another holds it."""
        epoch, record = self._latest(run_id)
        held = record is not None and not record.expired(time.time())
        if held and record and record.owner != self.owner and not _gone_from_this_host(record.owner):
            return None
        lease = Lease(run_id, epoch + 1, self.owner)
        try:
            self.store.put_json(lease.key, self._record(lease).model_dump())
        except AlreadyExists:  # another coordinator took this epoch a moment before us
            return None
        if epoch:
            log.info(
                "run %s: lease epoch %d taken over from %s",
                run_id,
                lease.epoch,
                record.owner if record else None,
            )
        return lease

    def renew(self, lease: Lease) -> None:
        """Extend the lease; raise LeaseLost if another coordinator has taken the run."""
        epoch, record = self._latest(lease.run_id)
        if epoch != lease.epoch or (record is not None and record.owner != lease.owner):
            known = record is not None and "owner" in record.model_fields_set
            holder = record.owner if record is not None and known else "another coordinator"
            raise LeaseLost(f"run {lease.run_id} was taken over by {holder}")
        self.store.put_json(lease.key, self._record(lease).model_dump(), overwrite=True)

    def release(self, lease: Lease) -> None:
        """Give the run up now (graceful stop): another coordinator may take it without waiting."""
        epoch, _ = self._latest(lease.run_id)
        if epoch == lease.epoch:
            released = {**self._record(lease).model_dump(), "expires_at": 0.0, "released": True}
            self.store.put_json(lease.key, released, overwrite=True)

    def _record(self, lease: Lease) -> LeaseRecord:
        now = time.time()
        return LeaseRecord(
            run_id=lease.run_id,
            epoch=lease.epoch,
            owner=lease.owner,
            renewed_at=now,
            expires_at=now + self.ttl_seconds,
        )


def _is_epoch(key: str) -> bool:
    name = key.rsplit("/", 1)[1]
    return name.endswith(".json") and name.removesuffix(".json").isdigit()
