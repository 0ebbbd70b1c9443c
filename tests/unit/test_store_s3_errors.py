"""How S3Store reads the server's answers, with a stub client (pure, fast): which S3 errors mean a full
store, which mean the key is taken, and how the HTTP client is bounded."""

from __future__ import annotations

import secrets
from typing import Any

import pytest
import urllib3
from minio.error import S3Error, ServerError

from seal_lab.errors import AlreadyExists, StoreFull, StoreUnavailable
from seal_lab.store.s3 import S3Store, http_client
from tests.s3_server import S3ServerInfo


def _s3_error(code: str, status: int) -> S3Error:
    response = urllib3.HTTPResponse(body=b"", status=status)
    return S3Error(
        response, code, f"{code} says the server", "/bucket/key", "req-1", "host-1", "bucket", "key"
    )


class StubClient:
    """Answers `_put_object` with the given error; holds objects for reads."""

    def __init__(self, error: Exception | None = None, objects: dict[str, bytes] | None = None) -> None:
        self.error = error
        self.objects = objects or {}
        self.headers: list[dict[str, str]] = []

    def _put_object(self, bucket: str, key: str, data: bytes, headers: dict[str, str]) -> None:
        self.headers.append(headers)
        if self.error is not None:
            raise self.error
        self.objects[key] = data

    def get_object(self, bucket: str, key: str) -> Any:
        data = self.objects[key]

        class Response:
            def read(self) -> bytes:
                return data

            def close(self) -> None: ...

            def release_conn(self) -> None: ...

        return Response()


def _store(client: StubClient) -> S3Store:
    return S3Store(client, "bucket", "s3.example:9000")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "error",
    [
        _s3_error("XMinioStorageFull", 507),
        _s3_error("QuotaExceeded", 403),
        _s3_error("XMinioAdminBucketQuotaExceeded", 400),
        _s3_error("SomethingElse", 507),
        ServerError("server failed with HTTP status code 507", 507),
    ],
)
def test_full_or_over_quota_is_store_full(error: Exception) -> None:
    with pytest.raises(StoreFull, match=r"s3://bucket@s3\.example:9000 is full .*'runs/k'.*\(4 bytes\)"):
        _store(StubClient(error)).put_bytes("runs/k", b"data")


@pytest.mark.parametrize(
    "code", ["AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken"]
)
def test_refused_credentials_say_access_denied_and_are_waited_out(code: str) -> None:
    """A revoked key is StoreUnavailable (callers wait for it to be restored, as for an outage), and its
    message says at once what is wrong and what to check."""
    with pytest.raises(StoreUnavailable) as caught:
        _store(StubClient(_s3_error(code, 403))).put_bytes("runs/k", b"data")
    assert not isinstance(caught.value, StoreFull)
    message = caught.value.message
    assert message.startswith("access denied: cannot write 'runs/k' in s3://bucket@s3.example:9000"), message
    assert f"S3 error {code}" in message and "SEAL_STORE_S3_ACCESS_KEY" in message


def test_entity_too_large_is_not_full() -> None:
    with pytest.raises(StoreUnavailable) as caught:
        _store(StubClient(_s3_error("EntityTooLarge", 400))).put_bytes("k", b"data")
    assert not isinstance(caught.value, StoreFull)


def test_writes_are_conditional_and_a_taken_key_is_compared() -> None:
    taken = StubClient(_s3_error("PreconditionFailed", 412), objects={"k": b"same"})
    _store(taken).put_bytes("k", b"same", "text/plain")  # identical: a retry that landed
    assert taken.headers == [{"Content-Type": "text/plain", "If-None-Match": "*"}]
    with pytest.raises(AlreadyExists):
        _store(taken).put_bytes("k", b"different")


def test_the_http_client_is_bounded_by_the_settings() -> None:
    settings = S3ServerInfo("s3.example:9000", "seal", secrets.token_hex(16)).store_settings(
        "bucket", s3_connect_timeout_seconds=2.5, s3_read_timeout_seconds=30.0, s3_max_retries=3
    )
    pool = http_client(settings)
    timeout, retry = pool.connection_pool_kw["timeout"], pool.connection_pool_kw["retries"]
    assert (timeout.connect_timeout, timeout.read_timeout) == (2.5, 30.0)
    assert (retry.total, retry.connect, retry.read, retry.status) == (3, 3, 3, 3)
    assert retry.allowed_methods is None  # PUT and DELETE too: every write is conditional or idempotent
    assert set(retry.status_forcelist) == {500, 502, 503, 504}
    assert retry.backoff_jitter == 0.5 and not retry.respect_retry_after_header
