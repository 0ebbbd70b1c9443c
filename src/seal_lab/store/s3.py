"""S3 object store on the `minio` client: plain S3 calls only, so MinIO, SeaweedFS and AWS all work.

Imported lazily by `seal_lab.store.open`, so a local-only deployment never loads minio. Building a store does no
network I/O; `check()` probes the bucket (creating it if allowed), so services can start while the store is down.

Writes are write-once on the server: a conditional PUT (`If-None-Match: *`) fails with 412 when the key
exists, and the store then compares bytes (equal: a retry of a write that landed; different: AlreadyExists).

Every call is bounded: the HTTP client has connect and read timeouts and a few quick retries, so one call
takes at most about (retries + 1) x (connect + read timeout) + back-off (~0.2 x 2^n s each, plus up to 0.5 s
of jitter). The read timeout bounds each wait for bytes, not a whole transfer; DNS look-ups are not covered.
When no region is set, minio first asks for the bucket's region (once per bucket), which can double the
first call.

Every minio or network error is translated here, once: a missing key is NotFound, no space or quota is
StoreFull, anything else the caller cannot fix by changing the request is StoreUnavailable. Credentials the
server refuses (a revoked key, a wrong secret, a right taken away) are StoreUnavailable too, saying "access
denied": callers wait them out like an outage, so an operator who restores the key loses no work.
"""

from __future__ import annotations

import io
import os
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import certifi
import urllib3
from minio import Minio
from minio.error import InvalidResponseError, MinioException, S3Error, ServerError
from minio.helpers import check_bucket_name

from seal_lab.errors import AlreadyExists, ConfigurationError, NotFound, StoreFull, StoreUnavailable
from seal_lab.settings import StoreSettings
from seal_lab.store import ObjectStore, folder_page, validate_key

#: S3 error codes that mean "this object is not there" (HEAD responses carry no body; minio names them).
_MISSING_KEY_CODES = frozenset({"NoSuchKey", "NoSuchObject"})
#: Codes make_bucket returns when another process created the bucket first.
_BUCKET_TAKEN_CODES = frozenset({"BucketAlreadyOwnedByYou", "BucketAlreadyExists"})
#: Codes for "no space" or "quota spent" (MinIO, AWS); HTTP 507 counts too. EntityTooLarge is a size limit.
_FULL_CODES = frozenset(
    {"XMinioStorageFull", "QuotaExceeded", "XMinioAdminBucketQuotaExceeded", "StorageFull"}
)
#: Codes for credentials the server refuses: revoked or unknown key, wrong secret, expired session, no right.
_DENIED_CODES = frozenset(
    {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken", "InvalidToken"}
)
_INSUFFICIENT_STORAGE = 507
_PRECONDITION_FAILED = 412
_DOWNLOAD_CHUNK = 1024 * 1024
#: Files up to this size are uploaded with the conditional PUT (read into memory); larger ones stream in parts.
CONDITIONAL_PUT_LIMIT = 16 * 1024 * 1024


def http_client(settings: StoreSettings) -> urllib3.PoolManager:
    """minio's default pool, with bounded timeouts and retries from the settings."""
    retries = settings.s3_max_retries
    retry = urllib3.Retry(
        total=retries,
        connect=retries,
        read=retries,
        status=retries,
        backoff_factor=0.2,
        backoff_jitter=0.5,  # services that failed together should not retry in lockstep
        status_forcelist=(500, 502, 503, 504),
        # Every call may be repeated: reads and deletes are idempotent, writes conditional or identical.
        allowed_methods=None,
        # A Retry-After header could make one call wait for minutes; our bound comes first.
        respect_retry_after_header=False,
        # After the last retry, hand the server's response to minio so the error names its S3 code.
        raise_on_status=False,
    )
    return urllib3.PoolManager(
        timeout=urllib3.Timeout(
            connect=settings.s3_connect_timeout_seconds, read=settings.s3_read_timeout_seconds
        ),
        maxsize=10,
        cert_reqs="CERT_REQUIRED",
        # The lab's CA from the settings (SEAL_STORE_S3_CA_FILE, or SSL_CERT_FILE as minio's default pool
        # reads it), else certifi's public CAs.
        ca_certs=str(settings.s3_ca_file) if settings.s3_ca_file is not None else certifi.where(),
        retries=retry,
    )


class S3Store(ObjectStore):
    """One bucket on an S3-compatible server; keys are object names."""

    #: Below the connection pool's size (http_client's maxsize=10): a connection each, none discarded.
    read_concurrency = 8

    def __init__(
        self,
        client: Minio,
        bucket: str,
        endpoint: str,
        *,
        create_bucket: bool = False,
        region: str | None = None,
    ) -> None:
        self.client = client
        self.bucket = bucket
        self.create_bucket = create_bucket
        self.region = region
        self.location = f"s3://{bucket}@{endpoint}"
        self.label = self.location

    @classmethod
    def from_settings(cls, settings: StoreSettings) -> S3Store:
        """Build the client from settings only (never the environment). No network I/O: see `check()`."""
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
                http_client=http_client(settings),
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
        return cls(
            client,
            settings.s3_bucket,
            settings.s3_endpoint,
            create_bucket=settings.s3_create_bucket,
            region=settings.s3_region,
        )

    def check(self) -> None:
        """The bucket is there (created here if the settings allow it) and the server answers."""
        with self._translate("check the bucket"):
            if self.client.bucket_exists(self.bucket):
                return
        if not self.create_bucket:
            raise StoreUnavailable(
                f"bucket {self.bucket!r} does not exist at {self.location} "
                "(create it, or allow SEAL_STORE_S3_CREATE_BUCKET)"
            )
        self.ensure_bucket(self.region)

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
    def _translate(self, action: str, key: str | None = None, needed: int | None = None) -> Iterator[None]:
        """Map minio and transport errors to domain errors, with the store location in the message."""
        what = f"{action} {key!r}" if key is not None else action
        try:
            yield
        except S3Error as exc:
            if key is not None and exc.code in _MISSING_KEY_CODES:
                raise NotFound(f"no object at key {key!r} in {self.location}") from None
            if exc.code == "NoSuchBucket":
                raise StoreUnavailable(
                    f"cannot {what}: bucket {self.bucket!r} does not exist at {self.location}"
                ) from exc
            if exc.code in _FULL_CODES or _http_status(exc) == _INSUFFICIENT_STORAGE:
                raise StoreFull(self._full_message(what, needed, exc.code)) from exc
            if exc.code in _DENIED_CODES:  # waited out like an outage: an operator restores the key
                raise StoreUnavailable(
                    f"access denied: cannot {what} in {self.location}: S3 error {exc.code}: {exc.message} "
                    "(check SEAL_STORE_S3_ACCESS_KEY, SEAL_STORE_S3_SECRET_KEY "
                    "and the key's rights on the bucket)"
                ) from exc
            raise StoreUnavailable(
                f"cannot {what} in {self.location}: S3 error {exc.code}: {exc.message}"
            ) from exc
        except (MinioException, urllib3.exceptions.HTTPError) as exc:
            # ServerError/InvalidResponseError (5xx, proxies); urllib3 wraps refused connections, resets and
            # timeouts (after the retries). Local disk errors are not caught: they are not the store's.
            if _http_status(exc) == _INSUFFICIENT_STORAGE:
                raise StoreFull(self._full_message(what, needed, "HTTP 507")) from exc
            raise StoreUnavailable(f"cannot {what} in {self.location}: {_describe(exc)}") from exc

    def _full_message(self, what: str, needed: int | None, code: str | None) -> str:
        need = f" ({needed} bytes)" if needed is not None else ""
        return f"{self.location} is full or over quota: cannot {what}{need}: {code}"

    # Writes.
    def put_bytes(
        self,
        key: str,
        data: bytes,
        content_type: str = "application/octet-stream",
        *,
        overwrite: bool = False,
    ) -> None:
        validate_key(key)
        if overwrite:
            with self._translate("write", key, len(data)):
                self.client.put_object(
                    self.bucket, key, io.BytesIO(data), len(data), content_type=content_type
                )
            return
        # Two rounds: if the object we collided with is deleted (quarantined) before we read it, try again.
        for _ in range(2):
            if self._put_if_absent(key, data, content_type):
                return
            try:
                existing = self.get_bytes(key)
            except NotFound:
                continue
            if existing == data:
                return  # the same bytes: a retry of a write that landed (its response was lost)
            raise AlreadyExists(
                f"key {key!r} in {self.location} already holds different bytes; keys are write-once", key=key
            )
        raise StoreUnavailable(f"cannot write {key!r} in {self.location}: it keeps appearing and vanishing")

    def _put_if_absent(self, key: str, data: bytes, content_type: str) -> bool:
        """One conditional PUT; False if the key already exists (412 Precondition Failed)."""
        # minio 7.2.20's public put_object takes no extra headers, so If-None-Match goes through the
        # _put_object it calls itself (same request, pinned version). The server then decides atomically.
        headers = {"Content-Type": content_type, "If-None-Match": "*"}
        with self._translate("write", key, len(data)):
            try:
                self.client._put_object(self.bucket, key, data, headers=headers)
            except (S3Error, ServerError, InvalidResponseError) as exc:
                if _http_status(exc) == _PRECONDITION_FAILED:
                    return False
                raise
        return True

    def put_file(self, key: str, path: Path, *, overwrite: bool = False) -> None:
        """Files up to CONDITIONAL_PUT_LIMIT take put_bytes' conditional PUT. Larger ones stream in parts
        (multipart has no portable If-None-Match) after an existence check; two writers racing on the same
        missing key can then both upload, and the last one wins: acceptable for our keys, whose bytes are
        determined by the key."""
        validate_key(key)
        path = Path(path)
        if not overwrite and path.stat().st_size <= CONDITIONAL_PUT_LIMIT:
            self.put_bytes(key, path.read_bytes())
            return
        if not overwrite and self.exists(key):
            if self._same_as_file(key, path):
                return
            raise AlreadyExists(
                f"key {key!r} in {self.location} already holds different bytes; keys are write-once", key=key
            )
        with self._translate("upload", key, path.stat().st_size):
            self.client.fput_object(self.bucket, key, os.fspath(path))

    def _same_as_file(self, key: str, path: Path) -> bool:
        """Stream the object and the file side by side (adapters do not fit comfortably in memory twice)."""
        with self._translate("compare", key):
            if self.client.stat_object(self.bucket, key).size != path.stat().st_size:
                return False
            response = self.client.get_object(self.bucket, key)
            try:
                with path.open("rb") as local:
                    for chunk in response.stream(_DOWNLOAD_CHUNK):
                        if local.read(len(chunk)) != chunk:
                            return False
                    return local.read(1) == b""
            finally:
                response.close()
                response.release_conn()

    def delete(self, key: str) -> None:
        validate_key(key)
        with self._translate("delete", key):
            self.client.remove_object(self.bucket, key)  # S3 answers 204 for a missing key too

    # Reads.
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

    def list_folders(self, prefix: str, start_after: str = "", limit: int | None = None) -> list[str]:
        # The delimiter listing: one entry per folder (never the keys inside), from StartAfter on, and no
        # further LIST request than `limit` needs. Names are compared again here: a server that orders the
        # keys (AWS: `a-b/` before `a/`) and one that orders the names (SeaweedFS's filer) give the same page,
        # but for names that extend one another with a character before '/' (never run ids or digests).
        after = f"{prefix}{start_after}" if start_after else None
        names: list[str] = []
        with self._translate(f"list folders under {prefix!r}"):
            for o in self.client.list_objects(self.bucket, prefix=prefix or None, start_after=after):
                name = (o.object_name or "")[len(prefix) :].rstrip("/")
                if o.is_dir and name and "/" not in name and name > start_after:
                    names.append(name)
                    if limit is not None and len(names) >= limit:
                        break
        return folder_page(names, start_after, limit)

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


def _http_status(exc: Exception) -> int | None:
    if isinstance(exc, S3Error):
        return exc.response.status if exc.response is not None else None
    if isinstance(exc, ServerError):
        return exc.status_code
    if isinstance(exc, InvalidResponseError):
        return exc._code  # minio keeps it private; it is the response's status
    return None


def _describe(exc: Exception) -> str:
    """One line for a transport error: what happened, without urllib3's object reprs."""
    if isinstance(exc, urllib3.exceptions.MaxRetryError) and exc.reason is not None:
        return f"{_describe(exc.reason)} (gave up after retries)"
    if isinstance(
        exc, urllib3.exceptions.NewConnectionError
    ):  # first: urllib3 makes it a ConnectTimeoutError
        # "HTTPConnection(host=..., port=...): Failed to establish a new connection: [Errno 111] ..."
        return re.sub(r"^(<[^>]*>|\w+\([^)]*\)):\s*", "", str(exc))
    if isinstance(exc, urllib3.exceptions.ConnectTimeoutError):
        return "connecting timed out"
    if isinstance(exc, urllib3.exceptions.ReadTimeoutError):
        return "no answer within the read timeout"
    if isinstance(exc, urllib3.exceptions.ProtocolError) and len(exc.args) > 1:
        return f"connection broken: {exc.args[1]}"
    # One line: a server's body (e.g. Go's "Client sent an HTTP request to an HTTPS server.\n") may end in one.
    return " ".join(f"{type(exc).__name__}: {exc}".split())
