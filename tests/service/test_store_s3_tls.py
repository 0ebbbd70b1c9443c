"""The S3 hop over TLS, against a real server: SeaweedFS's S3 gateway serving HTTPS with a certificate from a
throwaway CA (trustme). The store trusts the lab's CA through `s3_ca_file` (SEAL_STORE_S3_CA_FILE); without
it (certifi's public CAs) the handshake is refused, and a plaintext client gets no answer it can use. Every
failure is the store's own StoreUnavailable, one line, without the keys."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import trustme

from seal_lab.errors import StoreUnavailable
from seal_lab.store.s3 import S3Store
from tests.s3_server import S3ServerInfo, S3Tls, running_s3_server, unique_bucket


@dataclass(frozen=True)
class TlsServer:
    info: S3ServerInfo
    ca_file: Path


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsServer]:
    folder = tmp_path_factory.mktemp("s3-tls")
    ca = trustme.CA()
    server_cert = ca.issue_cert("127.0.0.1", "localhost")
    tls = S3Tls(folder / "cert.pem", folder / "key.pem", folder / "ca.pem")
    server_cert.cert_chain_pems[0].write_to_path(str(tls.cert_file))
    server_cert.private_key_pem.write_to_path(str(tls.key_file))
    ca.cert_pem.write_to_path(str(tls.ca_file))
    with running_s3_server(tls=tls) as info:
        yield TlsServer(info, tls.ca_file)


def _store(server: TlsServer, **overrides: object) -> S3Store:
    # No retries: a refused handshake is refused again, and the test should not wait for back-off.
    settings = server.info.store_settings(unique_bucket(), s3_max_retries=0, **overrides)
    return S3Store.from_settings(settings)


def _assert_clean(exc: StoreUnavailable, server: TlsServer) -> str:
    message = str(exc)
    assert "\n" not in message and "Traceback" not in message
    assert server.info.secret_key not in message and server.info.access_key not in message
    return message


def test_the_store_writes_and_reads_over_tls_with_the_labs_ca(tls_server: TlsServer) -> None:
    store = _store(tls_server, s3_secure=True, s3_ca_file=tls_server.ca_file)
    store.check()  # creates the bucket
    store.put_bytes("runs/r1/record.json", b'{"ok": true}')
    assert store.get_bytes("runs/r1/record.json") == b'{"ok": true}'
    assert store.list_keys("runs/") == ["runs/r1/record.json"]


def test_without_the_labs_ca_the_servers_certificate_is_refused(tls_server: TlsServer) -> None:
    store = _store(tls_server, s3_secure=True, s3_ca_file=None)  # certifi's public CAs
    with pytest.raises(StoreUnavailable) as caught:
        store.check()
    message = _assert_clean(caught.value, tls_server)
    assert tls_server.info.endpoint in message
    assert "CERTIFICATE_VERIFY_FAILED" in message or "certificate verify failed" in message


def test_a_plaintext_client_gets_nothing_from_the_tls_port(tls_server: TlsServer) -> None:
    store = _store(tls_server, s3_secure=False, s3_ca_file=tls_server.ca_file)
    with pytest.raises(StoreUnavailable) as caught:
        store.check()
    assert "HTTP request to an HTTPS server" in _assert_clean(caught.value, tls_server)  # Go's answer, kept
