"""A lab PKI made in the test (trustme): a CA, a certificate for 127.0.0.1/localhost (server and client use),
a second client certificate, and a foreign CA that signed none of them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import trustme
from pydantic import SecretStr

from seal_lab.security import Security, TlsSettings

#: Long enough for AuthSettings' minimum; the wrong one differs in its last character only.
TOKEN = "0123456789abcdef0123456789abcdef"
WRONG_TOKEN = "0123456789abcdef0123456789abcdeX"


@dataclass(frozen=True)
class LabCertificates:
    ca: Path
    cert: Path
    key: Path
    client_cert: Path
    client_key: Path
    foreign_ca: Path

    def server(self, client_auth: bool = False, token: str | None = TOKEN) -> Security:
        """A server on 127.0.0.1: its certificate; with `client_auth`, callers need one signed by the CA."""
        tls = TlsSettings(cert_file=self.cert, key_file=self.key, ca_file=self.ca, client_auth=client_auth)
        return Security(token=_secret(token), tls=tls)

    def client(self, with_cert: bool = False, token: str | None = TOKEN, foreign: bool = False) -> Security:
        """A caller that checks the server against the lab CA (or the foreign one); `with_cert`: mutual TLS."""
        files = {"cert_file": self.client_cert, "key_file": self.client_key} if with_cert else {}
        tls = TlsSettings(ca_file=self.foreign_ca if foreign else self.ca, **files)
        return Security(token=_secret(token), tls=tls)


def _secret(token: str | None) -> SecretStr | None:
    return SecretStr(token) if token is not None else None


def make_certificates(folder: Path) -> LabCertificates:
    folder.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA(organization_name="seal-lab test CA")
    server = ca.issue_cert("localhost", "127.0.0.1")
    client = ca.issue_cert("seal-lab-client")
    paths = LabCertificates(
        ca=folder / "ca.pem",
        cert=folder / "server.pem",
        key=folder / "server.key",
        client_cert=folder / "client.pem",
        client_key=folder / "client.key",
        foreign_ca=folder / "foreign-ca.pem",
    )
    ca.cert_pem.write_to_path(str(paths.ca))
    server.cert_chain_pems[0].write_to_path(str(paths.cert))
    server.private_key_pem.write_to_path(str(paths.key))
    client.cert_chain_pems[0].write_to_path(str(paths.client_cert))
    client.private_key_pem.write_to_path(str(paths.client_key))
    trustme.CA().cert_pem.write_to_path(str(paths.foreign_ca))
    return paths
