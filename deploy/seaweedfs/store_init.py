"""One-shot store-init job for the SeaweedFS store: `store_init.py [ENDPOINT]` (default store:9000).

With the root credentials it creates SEAL_BUCKET (if missing). Then it checks, with the services'
credentials, that least privilege holds: they can write, read, list and delete an object in the bucket, and
they can neither create a bucket nor write to another bucket. Any other outcome fails the job, and compose
then starts none of the services. Safe to rerun (`docker compose up` runs it at every start).
"""

from __future__ import annotations

import contextlib
import io
import os
import secrets
import sys
import time
from collections.abc import Callable

import urllib3
from minio import Minio
from minio.error import S3Error

#: Codes make_bucket returns when the bucket is there already.
_BUCKET_TAKEN = frozenset({"BucketAlreadyOwnedByYou", "BucketAlreadyExists"})
#: Codes that waiting does not fix: wrong credentials or a refused action.
_FINAL = frozenset({"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"})


def fail(message: str) -> None:
    sys.exit(f"store-init: FAIL: {message}")


def client(endpoint: str, access_variable: str, secret_variable: str) -> Minio:
    access, secret = os.environ.get(access_variable, ""), os.environ.get(secret_variable, "")
    if not access or not secret:
        fail(f"{access_variable} and {secret_variable} must be set (see .env.example)")
    http = urllib3.PoolManager(timeout=urllib3.Timeout(connect=5, read=30), retries=False)
    return Minio(endpoint, access_key=access, secret_key=secret, secure=False, http_client=http)


def retry(what: str, action: Callable[[], object], seconds: float = 60) -> object:
    """A fresh SeaweedFS may refuse the first writes while it grows a volume; retry those for a while."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            return action()
        except S3Error as exc:
            if exc.code in _FINAL or time.monotonic() > deadline:
                fail(f"{what}: S3 error {exc.code}: {exc.message}")
            error = f"{exc.code}: {exc.message}"
        except Exception as exc:  # connection refused, reset, 5xx while the store starts
            if time.monotonic() > deadline:
                fail(f"{what}: {type(exc).__name__}: {exc}")
            error = f"{type(exc).__name__}: {exc}"
        print(f"store-init: {what} not possible yet ({error}); retrying", flush=True)
        time.sleep(2)


def denied(what: str, action: Callable[[], object], undo: Callable[[], object] | None = None) -> None:
    """The services' credentials must get AccessDenied for this (if they do not, `undo` cleans up)."""
    try:
        action()
    except S3Error as exc:
        if exc.code != "AccessDenied":
            fail(f"the services' credentials: {what} failed with {exc.code}, expected AccessDenied")
        print(f"store-init: ok: the services cannot {what} (AccessDenied)", flush=True)
        return
    if undo is not None:
        with contextlib.suppress(Exception):
            undo()
    fail(f"the services' credentials can {what}: they must be limited to their bucket")


def main() -> None:
    endpoint = sys.argv[1] if len(sys.argv) > 1 else "store:9000"
    bucket = os.environ.get("SEAL_BUCKET") or "seal-lab"
    root = client(endpoint, "MINIO_ROOT_USER", "MINIO_ROOT_PASSWORD")
    service = client(endpoint, "SEAL_S3_ACCESS_KEY", "SEAL_S3_SECRET_KEY")

    def make_bucket() -> str:
        try:
            root.make_bucket(bucket)
        except S3Error as exc:
            if exc.code not in _BUCKET_TAKEN:
                raise
            return "exists"
        return "created"

    print(f"store-init: bucket {bucket!r} {retry(f'create bucket {bucket!r}', make_bucket)}", flush=True)

    # The services can use their bucket...
    key = f"store-init/probe-{secrets.token_hex(4)}"
    data = secrets.token_bytes(32)
    retry(
        "write a probe object as the services",
        lambda: service.put_object(bucket, key, io.BytesIO(data), len(data)),
    )
    response = service.get_object(bucket, key)
    try:
        if response.read() != data:
            fail(f"the probe object {key!r} read back differs from what was written")
    finally:
        response.close()
        response.release_conn()
    if key not in {o.object_name for o in service.list_objects(bucket, prefix="store-init/", recursive=True)}:
        fail(f"the probe object {key!r} is not listed")
    service.remove_object(bucket, key)
    print(f"store-init: ok: the services can write, read, list and delete in {bucket!r}", flush=True)

    # ... and nothing else: no new bucket, no write to another (existing) bucket.
    other = f"{bucket[:40]}-probe-{secrets.token_hex(4)}"
    denied(
        f"create the bucket {other!r}", lambda: service.make_bucket(other), lambda: root.remove_bucket(other)
    )
    root.make_bucket(other)
    try:
        denied(f"write to the bucket {other!r}", lambda: service.put_object(other, "x", io.BytesIO(b"x"), 1))
    finally:
        for item in root.list_objects(other, recursive=True):
            root.remove_object(other, item.object_name)
        root.remove_bucket(other)
    print("store-init: done", flush=True)


if __name__ == "__main__":
    main()
