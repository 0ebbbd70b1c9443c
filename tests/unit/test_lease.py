"""Run leases on a real (local) store: one holder at a time, takeover after expiry, loss detected."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import pytest

from seal_lab.errors import AlreadyExists
from seal_lab.store.local import LocalStore
from services.coordinator.engine.lease import Leases, default_owner, lease_key
from services.coordinator.engine.records import LeaseLost


@pytest.fixture
def store(tmp_path) -> LocalStore:
    return LocalStore(tmp_path / "store")


def test_a_held_lease_keeps_other_coordinators_out(store):
    a, b = Leases(store, "a", ttl_seconds=30), Leases(store, "b", ttl_seconds=30)
    lease = a.first("run-1")
    assert b.acquire("run-1") is None
    assert b.holder("run-1") == "a"
    a.renew(lease)
    assert b.acquire("run-1") is None


def test_an_expired_lease_is_taken_over_and_the_old_holder_learns_it(store):
    a, b = Leases(store, "a", ttl_seconds=0.2), Leases(store, "b", ttl_seconds=30)
    old = a.acquire("run-1")
    assert old is not None and old.epoch == 1
    time.sleep(0.3)
    new = b.acquire("run-1")
    assert new is not None and new.epoch == 2 and b.holder("run-1") == "b"
    with pytest.raises(LeaseLost, match="taken over by b"):
        a.renew(old)


def test_of_two_racing_for_the_same_epoch_one_wins(store):
    a, b = Leases(store, "a", ttl_seconds=30), Leases(store, "b", ttl_seconds=30)
    # Both saw no lease; the store's write-once create decides.
    first = a.first("run-1")
    with pytest.raises(AlreadyExists, match="already"):
        b.first("run-1")
    assert first.owner == "a"


def test_a_released_lease_can_be_taken_at_once(store):
    a, b = Leases(store, "a", ttl_seconds=3600), Leases(store, "b", ttl_seconds=3600)
    a.release(a.first("run-1"))
    assert b.acquire("run-1") is not None


def test_an_unreadable_lease_protects_nothing(store):
    Leases(store, "a", ttl_seconds=3600).first("run-1")
    store.put_bytes(lease_key("run-1", 1), b"", overwrite=True)
    lease = Leases(store, "b", ttl_seconds=30).acquire("run-1")
    assert lease is not None and lease.epoch == 2


def test_a_restart_on_the_same_host_takes_its_crashed_predecessors_runs_at_once(store):
    """The default owner names carry host and pid: a lease whose process is gone protects nothing, even
    before it expires (a crash, a restarted container: pid 1 again, another random suffix)."""
    finished = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    dead_pid = int(finished.stdout)
    host = socket.gethostname()
    for predecessor in (f"{host}:{dead_pid}:aaaaaa", f"{host}:{os.getpid()}:bbbbbb"):
        run_id = f"run-{predecessor.rsplit(':', 1)[1]}"
        Leases(store, predecessor, ttl_seconds=3600).first(run_id)
        assert Leases(store, default_owner(), ttl_seconds=30).acquire(run_id) is not None


def test_a_live_coordinator_or_one_on_another_host_keeps_its_runs(store):
    host = socket.gethostname()
    for holder in (f"{host}:{os.getppid()}:cccccc", f"not-{host}:1:dddddd", "coordinator-a"):
        run_id = f"run-{abs(hash(holder))}"
        Leases(store, holder, ttl_seconds=3600).first(run_id)
        assert Leases(store, default_owner(), ttl_seconds=30).acquire(run_id) is None


def test_a_lease_record_is_typed_and_one_that_is_not_a_lease_protects_nothing(store):
    from seal_lab.store import json_bytes
    from services.coordinator.run.records import LeaseRecord

    a, b = Leases(store, "a", ttl_seconds=30), Leases(store, "b", ttl_seconds=30)
    lease = a.first("run-1")
    stored = store.get_bytes(lease.key)
    record = LeaseRecord.model_validate_json(stored)
    assert record.owner == "a" and record.epoch == 1 and not record.expired(time.time())
    assert record.released is None and json_bytes(record.model_dump()) == stored  # no `released` until then
    a.release(lease)
    assert LeaseRecord.model_validate_json(store.get_bytes(lease.key)).released is True
    # Epoch 2 with an expiry that is not a number: nobody holds the run, b takes it (epoch 3).
    store.put_json(lease_key("run-1", 2), {"owner": "a", "expires_at": "soon"})
    assert b.holder("run-1") == "" and b.acquire("run-1") is not None
