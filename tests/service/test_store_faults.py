"""The store under faults: a server that never answers, nothing listening, a full disk, an S3 server killed
and started again. Every failure is a StoreUnavailable (StoreFull for space) within a bound, with a message a
person can act on, and nothing half-written is left where a reader could see it."""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from seal_lab.errors import NotFound, StoreFull, StoreUnavailable, Unavailable
from seal_lab.store import ObjectStore
from seal_lab.store.local import LocalStore
from seal_lab.store.s3 import S3Store
from tests.s3_server import S3Server, S3ServerInfo, unique_bucket

#: connect 1 s, read 1 s, 1 retry: one call waits about 2 x 1 s, plus up to 0.5 s of jitter.
FAST_FAIL = {"s3_connect_timeout_seconds": 1.0, "s3_read_timeout_seconds": 1.0, "s3_max_retries": 1}
BOUND_S = 6.0


def _store_at(endpoint: str) -> S3Store:
    info = S3ServerInfo(endpoint, "seal-test", secrets.token_hex(16))
    return S3Store.from_settings(info.store_settings("some-bucket", **FAST_FAIL))


@pytest.fixture
def black_hole() -> Iterator[str]:
    """host:port of a loopback server that accepts connections and never says a word."""
    listener = socket.create_server(("127.0.0.1", 0), backlog=64)
    listener.settimeout(0.1)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                held.append(listener.accept()[0])

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"127.0.0.1:{listener.getsockname()[1]}"
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    listener.close()


def _timed_failure(call: object) -> tuple[StoreUnavailable, float]:
    started = time.monotonic()
    with pytest.raises(StoreUnavailable) as caught:
        call()  # type: ignore[operator]
    return caught.value, time.monotonic() - started


def test_a_server_that_never_answers_fails_each_call_within_the_bound(black_hole: str) -> None:
    store = _store_at(black_hole)
    for call in (lambda: store.get_bytes("k"), lambda: store.put_bytes("k", b"v"), store.check):
        error, elapsed = _timed_failure(call)
        # Two attempts, each waiting out the 1 s read timeout: the retry happened, and then it stopped.
        assert 1.9 <= elapsed < BOUND_S, elapsed
        assert black_hole in error.message and "read timeout" in error.message
        assert "Traceback" not in error.message and " at 0x" not in error.message


def test_nothing_listening_fails_fast() -> None:
    with socket.create_server(("127.0.0.1", 0)) as sock:
        endpoint = f"127.0.0.1:{sock.getsockname()[1]}"  # closed when the block ends: nothing listens
    store = _store_at(endpoint)
    for call in (lambda: store.get_bytes("k"), store.check, lambda: store.list_keys("")):
        error, elapsed = _timed_failure(call)
        assert elapsed < 2.0, elapsed
        assert endpoint in error.message and "Connection refused" in error.message
        assert "Traceback" not in error.message and " at 0x" not in error.message


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs, unmounted afterwards. Needs root (CI runs as root); skipped, saying so, without it."""
    mount_point = tmp_path / "tiny"
    mount_point.mkdir()
    command = ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount_point)]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=10)
    except FileNotFoundError:
        pytest.skip("no `mount` command: cannot make a small disk to fill")
    if result.returncode != 0:
        pytest.skip(f"mounting a 1 MiB tmpfs is not permitted here (needs root): {result.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", str(mount_point)], check=True, timeout=30)


def test_a_full_disk_is_store_full_and_leaves_nothing_half_written(tiny_disk: Path) -> None:
    store = LocalStore(tiny_disk / "store")
    first, second = os.urandom(600 * 1024), os.urandom(600 * 1024)
    store.put_bytes("fill/first.bin", first)

    with pytest.raises(StoreFull) as caught:
        store.put_bytes("fill/second.bin", second)
    message = caught.value.message
    assert isinstance(caught.value, StoreUnavailable) and isinstance(caught.value, Unavailable)
    assert "'fill/second.bin' needs 614400 bytes" in message, message
    free = int(message.rsplit(", ", 1)[1].split()[0])
    assert 0 <= free < 614400
    assert str(tiny_disk) not in message
    assert store.list_keys("") == ["fill/first.bin"]
    with pytest.raises(NotFound):
        store.get_bytes("fill/second.bin")
    assert os.listdir(store.root / "fill") == ["first.bin"]  # no temporary left taking the space

    store.delete("fill/first.bin")  # space comes back: the same write now succeeds
    store.put_bytes("fill/second.bin", second)
    assert store.get_bytes("fill/second.bin") == second


def test_objects_survive_an_s3_server_kill_and_restart() -> None:
    with S3Server() as server:
        store: ObjectStore = S3Store.from_settings(
            server.start().store_settings(unique_bucket(), **FAST_FAIL)
        )
        store.check()
        data = os.urandom(100_000)
        store.put_bytes("runs/r/adapter.bin", data)

        server.kill()
        with pytest.raises(StoreUnavailable):
            store.get_bytes("runs/r/adapter.bin")
        with pytest.raises(StoreUnavailable):
            store.check()

        server.start()
        store.check()
        assert store.get_bytes("runs/r/adapter.bin") == data
        store.put_bytes("runs/r/adapter.bin", data)  # still write-once, still idempotent
