"""S3 object store on the `minio` client: plain S3 calls only, so MinIO, SeaweedFS and AWS all work.

Imported lazily by `open_store`, so a local-only deployment never loads minio. Every minio or network error
is translated here, once, into the domain errors: a missing key is NotFound, anything else the caller cannot
fix by changing the request is Unavailable.
"""

from __future__ import annotations

import io
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import urllib3
from minio import Minio
from minio.error import MinioException, S3Error
from minio.helpers import check_bucket_name

from seal_lab.errors import ConfigurationError, NotFound, Unavailable
from seal_lab.settings import StoreSettings
from seal_lab.store import ObjectStore, validate_key

#: S3 error codes that mean "this object is not there" (HEAD responses carry no body; minio names them).
_MISSING_KEY_CODES = frozenset({"NoSuchKey", "NoSuchObject"})
#: Codes make_bucket returns when another process created the bucket first.
_BUCKET_TAKEN_CODES = frozenset({"BucketAlreadyOwnedByYou", "BucketAlreadyExists"})
_DOWNLOAD_CHUNK = 1024 * 1024


class S3Store(ObjectStore):
    """One bucket on an S3-compatible server; keys are object names."""

    def __init__(self, client: Minio, bucket: str, endpoint: str) -> None:
        self.client = client
        self.bucket = bucket
        self.location = f"s3://{bucket}@{endpoint}"

    @classmethod
    def from_settings(cls, settings: StoreSettings) -> S3Store:
        """Build the client from settings only (never the environment), creating the bucket if allowed."""
        if settings.s3_access_key is None or settings.s3_secret_key is None:
            raise ConfigurationError(
                "the S3 store needs SEAL_STORE_S3_ACCESS_KEY and SEAL_STORE_S3_SECRET_KEY"
            )
        try:
            client = Minio(
                settings.s3_endpoint,
                access_key=settings.s3_access_key.get_secret_value(),
                secret_key=settings.s3_secret_key.get_secret_value(),
                secure=settings.s3_secure,
                region=settings.s3_region,
            )
        except ValueError as exc:  # minio wants "host[:port]", without scheme or path
            raise ConfigurationError(
                f"invalid SEAL_STORE_S3_ENDPOINT {settings.s3_endpoint!r}: {exc} "
                "(use host:port and SEAL_STORE_S3_SECURE for https)"
            ) from None
        try:
            # Strict (what make_bucket enforces), so a bad name fails at start-up, not as a bug on first use.
            check_bucket_name(settings.s3_bucket, strict=True)
        except ValueError as exc:
            raise ConfigurationError(f"invalid SEAL_STORE_S3_BUCKET {settings.s3_bucket!r}: {exc}") from None
        store = cls(client, settings.s3_bucket, settings.s3_endpoint)
        # Without s3_create_bucket nothing is checked here: least-privilege AWS policies may forbid HeadBucket,
        # and a missing bucket is then reported as Unavailable on first use.
        if settings.s3_create_bucket:
            store.ensure_bucket(settings.s3_region)
        return store

    def ensure_bucket(self, region: str | None = None) -> None:
        """Create the bucket if it does not exist; tolerate a concurrent creator."""
        with self._translate("check or create the bucket"):
            if self.client.bucket_exists(self.bucket):
                return
            try:
                self.client.make_bucket(self.bucket, location=region)
            except S3Error as exc:
                if exc.code not in _BUCKET_TAKEN_CODES:
                    raise

    @contextmanager
    def _translate(self, action: str, key: str | None = None) -> Iterator[None]:
        """Map minio and transport errors to domain errors, with the store location in the message."""
        what = f"{action} {key!r}" if key is not None else action
        try:
            yield
        except S3Error as exc:
            if key is not None and exc.code in _MISSING_KEY_CODES:
                raise NotFound(f"no object at key {key!r} in {self.location}") from None
            if exc.code == "NoSuchBucket":
                raise Unavailable(
                    f"cannot {what}: bucket {self.bucket!r} does not exist at {self.location}"
                ) from exc
            raise Unavailable(
                f"cannot {what} in {self.location}: S3 error {exc.code}: {exc.message}"
            ) from exc
        except (MinioException, urllib3.exceptions.HTTPError) as exc:
            # ServerError/InvalidResponseError (5xx, proxies); urllib3 wraps refused connections, resets and
            # timeouts (after minio's retries). Local disk errors are not caught: they are not the store's.
            raise Unavailable(f"cannot {what} in {self.location}: {type(exc).__name__}: {exc}") from exc

    def put_bytes(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> None:
        validate_key(key)
        with self._translate("write", key):
            self.client.put_object(self.bucket, key, io.BytesIO(data), len(data), content_type=content_type)

    def get_bytes(self, key: str) -> bytes:
        validate_key(key)
        with self._translate("read", key):
            response = self.client.get_object(self.bucket, key)
            try:
                return response.read()
            finally:
                # close() frees the response; release_conn() returns the socket to the pool for reuse.
                response.close()
                response.release_conn()

    def exists(self, key: str) -> bool:
        validate_key(key)
        try:
            with self._translate("check", key):
                self.client.stat_object(self.bucket, key)
        except NotFound:
            return False
        return True

    def list_keys(self, prefix: str) -> list[str]:
        with self._translate(f"list keys under {prefix!r}"):
            objects = self.client.list_objects(self.bucket, prefix=prefix or None, recursive=True)
            # Some servers (SeaweedFS) can report directory markers; they are not objects.
            return sorted(o.object_name for o in objects if o.object_name and not o.is_dir)

    def put_file(self, key: str, path: Path) -> None:
        """Stream from disk (multipart above 5 MiB) instead of loading adapters into memory."""
        validate_key(key)
        with self._translate("upload", key):
            self.client.fput_object(self.bucket, key, os.fspath(path))

    def get_file(self, key: str, destination: Path) -> Path:
        """Stream into a temporary file next to `destination`, then rename: readers never see a partial file."""
        validate_key(key)
        destination = Path(destination)
        with self._translate("download", key):
            # Request first, so a missing key leaves nothing behind on disk.
            response = self.client.get_object(self.bucket, key)
            try:
                destination.parent.mkdir(parents=True, exist_ok=True)
                fd, tmp_name = tempfile.mkstemp(
                    dir=destination.parent, prefix=f".{destination.name}.", suffix=".part"
                )
                try:
                    with os.fdopen(fd, "wb") as handle:
                        for chunk in response.stream(_DOWNLOAD_CHUNK):
                            handle.write(chunk)
                    os.replace(tmp_name, destination)
                except BaseException:
                    Path(tmp_name).unlink(missing_ok=True)
                    raise
            finally:
                response.close()
                response.release_conn()
        return destination
