"""Write-once keys, corrupt objects and quarantine: the ObjectStore contract, on both backends.

The store refuses to replace a record with different bytes, lets a retried write of the same bytes through,
and never hands out an object that is not what its key promises: bad JSON and tampered content-addressed
objects are reported as CorruptObject, and the latter are moved aside so the next reader sees them missing.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from seal_lab.errors import AlreadyExists, CorruptObject, InvalidArgument, NotFound
from seal_lab.store import ObjectStore, content_digest, sha256_hex


def test_a_key_is_write_once_and_keeps_its_first_bytes(store: ObjectStore) -> None:
    store.put_bytes("runs/r/spec.json", b"first")
    with pytest.raises(AlreadyExists, match=r"runs/r/spec\.json") as caught:
        store.put_bytes("runs/r/spec.json", b"second")
    assert caught.value.key == "runs/r/spec.json"
    assert store.get_bytes("runs/r/spec.json") == b"first"
    with pytest.raises(AlreadyExists):
        store.put_json("runs/r/spec.json", {"other": 1})
    assert store.list_keys("runs/") == ["runs/r/spec.json"]


def test_writing_the_same_bytes_again_is_a_no_op(store: ObjectStore) -> None:
    """A retry of a write whose answer was lost must not fail."""
    store.put_json("runs/r/job.json", {"a": 1})
    store.put_json("runs/r/job.json", {"a": 1})
    store.put_bytes("blobs/empty", b"")
    store.put_bytes("blobs/empty", b"")
    assert store.get_json("runs/r/job.json") == {"a": 1}
    assert store.list_keys("") == ["blobs/empty", "runs/r/job.json"]


def test_overwrite_replaces_the_object(store: ObjectStore, tmp_path: Path) -> None:
    store.put_bytes("state/latest", b"v1")
    store.put_bytes("state/latest", b"v2", overwrite=True)
    assert store.get_bytes("state/latest") == b"v2"
    store.put_json("state/latest", {"v": 3}, overwrite=True)
    assert store.get_json("state/latest") == {"v": 3}
    source = tmp_path / "v4"
    source.write_bytes(b"v4")
    store.put_file("state/latest", source, overwrite=True)
    assert store.get_bytes("state/latest") == b"v4"
    assert store.list_keys("state/") == ["state/latest"]


def test_put_file_is_write_once_too(store: ObjectStore, tmp_path: Path) -> None:
    source = tmp_path / "a.bin"
    source.write_bytes(b"adapter weights")
    store.put_file("adapters/a/w.bin", source)
    store.put_file("adapters/a/w.bin", source)  # same bytes: fine
    source.write_bytes(b"other weights!!")  # same size, different bytes
    with pytest.raises(AlreadyExists):
        store.put_file("adapters/a/w.bin", source)
    assert store.get_bytes("adapters/a/w.bin") == b"adapter weights"


@pytest.mark.parametrize("data", [b"", b"{not json", b'{"a": 1', b"\xff\xfe\x00garbage"])
def test_get_json_of_bytes_that_are_not_json_is_a_corrupt_object(store: ObjectStore, data: bytes) -> None:
    store.put_bytes("runs/r/record.json", data)
    with pytest.raises(CorruptObject, match=r"runs/r/record\.json") as caught:
        store.get_json("runs/r/record.json")
    assert caught.value.key == "runs/r/record.json"
    assert "Traceback" not in caught.value.message


def test_quarantine_moves_an_object_aside_with_its_reason(store: ObjectStore) -> None:
    store.put_bytes("runs/r/bad.json", b"\x00broken")
    moved = store.quarantine("runs/r/bad.json", "does not parse")

    assert moved.startswith("quarantine/runs/r/bad.json.")
    assert moved.endswith("Z")
    assert not store.exists("runs/r/bad.json")
    with pytest.raises(NotFound):
        store.get_bytes("runs/r/bad.json")
    assert store.get_bytes(moved) == b"\x00broken"
    reason = store.get_json(f"{moved}.reason.json")
    assert reason["key"] == "runs/r/bad.json"
    assert reason["reason"] == "does not parse"
    assert reason["at"].startswith("20")
    assert store.list_keys("runs/") == []  # quarantine lives beside the data, not inside it
    assert store.list_keys("quarantine/") == [moved, f"{moved}.reason.json"]
    assert store.quarantine("runs/r/bad.json", "again") == ""  # already gone: nothing to do


def test_get_verified_returns_bytes_that_match_their_content_key(store: ObjectStore) -> None:
    key = store.put_content("datasets", b'{"text": "fact"}\n', ".jsonl")
    assert content_digest(key) == sha256_hex(b'{"text": "fact"}\n')
    assert store.get_verified(key) == b'{"text": "fact"}\n'


def test_get_verified_quarantines_a_tampered_object(store: ObjectStore) -> None:
    data = b'{"text": "fact"}\n'
    key = store.put_content("datasets", data, ".jsonl")
    store.put_bytes(key, b'{"text": "lie"}\n', overwrite=True)  # bit rot, a bad copy, a hand edit

    with pytest.raises(CorruptObject, match="does not match") as caught:
        store.get_verified(key)
    assert caught.value.key == key
    assert not store.exists(key)
    (moved, reason) = store.list_keys("quarantine/")
    assert store.get_bytes(moved) == b'{"text": "lie"}\n'
    assert store.get_json(reason)["key"] == key
    # The writer can put the right bytes back.
    assert store.put_content("datasets", data, ".jsonl") == key
    assert store.get_verified(key) == data


def test_put_content_quarantines_a_corrupt_object_it_collides_with(
    store: ObjectStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = b"the real bytes"
    key = f"datasets/{sha256_hex(data)}.bin"
    store.put_bytes(key, b"corrupt")
    monkeypatch.setattr(store, "exists", lambda _key: False)  # it appears just after put_content's check
    assert store.put_content("datasets", data, ".bin") == key
    assert store.get_verified(key) == data
    (moved, _reason) = store.list_keys("quarantine/")
    assert store.get_bytes(moved) == b"corrupt"


@pytest.mark.parametrize("key", ["runs/r/record.json", "datasets/abc.jsonl", f"{'a' * 64}.bin"])
def test_get_verified_needs_a_key_with_a_sha256(store: ObjectStore, key: str) -> None:
    with pytest.raises(InvalidArgument, match="sha256"):
        store.get_verified(key)


def test_delete_removes_the_object_and_a_missing_key_is_fine(store: ObjectStore) -> None:
    store.put_bytes("tmp/a", b"x")
    store.put_bytes("tmp/b", b"y")
    store.delete("tmp/a")
    store.delete("tmp/a")
    store.delete("never/was")
    assert not store.exists("tmp/a")
    assert store.list_keys("tmp/") == ["tmp/b"]
    store.put_bytes("tmp/a", b"new")  # a deleted key can be written again
    assert store.get_bytes("tmp/a") == b"new"


def test_check_passes_on_a_working_store(store: ObjectStore) -> None:
    store.check()
