"""Least privilege on a real S3 server: a service's credentials scoped to the project bucket
(`scoped_identity`, SeaweedFS's `Action:<bucket>` grants) do everything the store needs there and nothing
elsewhere. What SeaweedFS 4.48 does, checked here: other buckets answer AccessDenied for reads, writes,
listing and HEAD; creating a bucket is AccessDenied; listing all buckets shows only the project bucket."""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pytest
from minio import Minio
from minio.error import S3Error

from seal_lab.errors import StoreUnavailable
from seal_lab.store.s3 import S3Store
from tests.s3_server import S3ServerInfo, identity_keys, running_s3_server, scoped_identity, unique_bucket


@dataclass(frozen=True)
class ScopedServer:
    info: S3ServerInfo
    project: str
    other: str
    scoped: S3ServerInfo  # the same server, reached with the scoped identity's keys


@pytest.fixture(scope="module")
def scoped_server() -> Iterator[ScopedServer]:
    project, other = unique_bucket(), unique_bucket()
    identity = scoped_identity("seal-service", project)
    with running_s3_server(extra_identities=[identity]) as info:
        admin = Minio(info.endpoint, info.access_key, info.secret_key, secure=False)
        admin.make_bucket(project)
        admin.make_bucket(other)
        admin.put_object(other, "private/record.json", io.BytesIO(b"{}"), 2)
        access, secret = identity_keys(identity)
        yield ScopedServer(info, project, other, S3ServerInfo(info.endpoint, access, secret))


@contextmanager
def _context(name: str) -> Iterator[None]:
    """Name the call in the failure, so a loop of checks says which one let the identity through."""
    try:
        yield
    except BaseException as exc:
        exc.add_note(f"while checking: {name}")
        raise


def _scoped_store(server: ScopedServer, bucket: str) -> S3Store:
    # No bucket creation: a least-privilege deployment has its bucket made by an administrator.
    return S3Store.from_settings(server.scoped.store_settings(bucket, s3_create_bucket=False))


def test_scoped_credentials_do_everything_the_store_needs_in_the_project_bucket(
    scoped_server: ScopedServer,
) -> None:
    store = _scoped_store(scoped_server, scoped_server.project)
    store.check()
    key = store.put_content("datasets", b"fact\n", ".jsonl")
    store.put_content(
        "datasets", b"fact\n", ".jsonl"
    )  # the conditional PUT's 412 path, read back and compared
    store.put_json("runs/r/spec.json", {"n": 1})
    store.put_json("runs/r/spec.json", {"n": 1})
    assert store.get_verified(key) == b"fact\n"
    assert store.exists("runs/r/spec.json")
    assert store.list_keys("") == sorted([key, "runs/r/spec.json"])
    moved = store.quarantine("runs/r/spec.json", "test")
    assert store.list_keys("quarantine/") == [moved, f"{moved}.reason.json"]
    store.delete(key)
    assert not store.exists(key)


def test_scoped_credentials_cannot_touch_another_bucket(scoped_server: ScopedServer) -> None:
    store = _scoped_store(scoped_server, scoped_server.other)
    calls = {
        "check": store.check,
        "read": lambda: store.get_bytes("private/record.json"),
        "write": lambda: store.put_bytes("planted", b"x"),
        "overwrite": lambda: store.put_bytes("private/record.json", b"x", overwrite=True),
        "list": lambda: store.list_keys(""),
        "delete": lambda: store.delete("private/record.json"),
    }
    for name, call in calls.items():
        with pytest.raises(StoreUnavailable, match="AccessDenied"), _context(name):
            call()
    admin = Minio(
        scoped_server.info.endpoint,
        scoped_server.info.access_key,
        scoped_server.info.secret_key,
        secure=False,
    )
    assert [o.object_name for o in admin.list_objects(scoped_server.other, recursive=True)] == [
        "private/record.json"
    ]


def test_scoped_credentials_cannot_create_buckets_or_see_other_buckets(scoped_server: ScopedServer) -> None:
    client = Minio(
        scoped_server.scoped.endpoint,
        scoped_server.scoped.access_key,
        scoped_server.scoped.secret_key,
        secure=False,
    )
    new_bucket = unique_bucket()
    with pytest.raises(S3Error) as caught:
        client.make_bucket(new_bucket)
    assert caught.value.code == "AccessDenied"
    store = S3Store.from_settings(scoped_server.scoped.store_settings(new_bucket, s3_create_bucket=True))
    with pytest.raises(StoreUnavailable, match="AccessDenied"):
        store.check()
    admin = Minio(
        scoped_server.info.endpoint,
        scoped_server.info.access_key,
        scoped_server.info.secret_key,
        secure=False,
    )
    assert not admin.bucket_exists(new_bucket)
    # SeaweedFS answers ListBuckets, filtered to the buckets the identity may use.
    assert [b.name for b in client.list_buckets()] == [scoped_server.project]
