"""Who may call a seal-lab service, and over what: the shared token, the TLS files, and the start-up check.

One token and one set of TLS files per process, used on every hop it serves and every hop it calls:
- `SEAL_AUTH_TOKEN` (or `SEAL_AUTH_TOKEN_FILE`): the bearer token that every gRPC service and the
  coordinator's `/v1` API require, and that every client (the coordinator calling the services, the
  `seal-lab` CLI, the health probes) sends. The same value everywhere. Unset: no caller is checked,
  which only a service listening on loopback may allow (`refuse_unsafe_start`).
- `SEAL_TLS_*`: one lab CA signs every certificate. A server presents its certificate; a client verifies
  the server against the CA and, under mutual TLS, presents its own certificate (the same files).

Entry points build the settings (`security_from_environment`) and pass a `Security` down; the gRPC side is
`seal_lab.rpc.auth`, the HTTP side the coordinator's `api/deps.py` and `cli/api_client.py`.
"""

from __future__ import annotations

import ipaddress
import re
import ssl
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

from pydantic import Field, PrivateAttr, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from seal_lab.settings import load_or_explain, refuse_weak_secret, secret_or_file

#: A token is guessed over the network one request at a time; 16 characters of `openssl rand -hex` are 64 bits.
MIN_TOKEN_LENGTH = 16
#: It travels in an HTTP header and in gRPC metadata: printable ASCII, no spaces.
_TOKEN_CHARACTERS = re.compile(r"[\x21-\x7e]+")


class AuthSettings(BaseSettings):
    """The token shared by every service, the coordinator and the CLI. `SEAL_AUTH_*`.

    `SEAL_AUTH_TOKEN`, or `SEAL_AUTH_TOKEN_FILE` naming a file that holds it (Docker and Kubernetes secrets),
    never both. Well-known example values and tokens under 16 characters are refused.
    """

    model_config = SettingsConfigDict(env_prefix="SEAL_AUTH_", extra="ignore", hide_input_in_errors=True)

    token: SecretStr | None = Field(
        default=None,
        description="The bearer token shared by every service, the coordinator and the CLI: servers require it beyond loopback, clients send it. Example values and tokens under 16 characters are refused; `openssl rand -hex 24` makes one.",
    )
    token_file: Path | None = Field(
        default=None,
        description="Read the token from this file instead (Docker or Kubernetes secrets); set the token or its file, not both.",
    )

    @model_validator(mode="after")
    def _token(self) -> AuthSettings:
        self.token = secret_or_file(self.token, self.token_file, "SEAL_AUTH_TOKEN")
        if self.token is not None:
            value = self.token.get_secret_value()
            refuse_weak_secret(
                value,
                "SEAL_AUTH_TOKEN",
                MIN_TOKEN_LENGTH,
                "it is guessed over the network",
                "use the same value on every service and client",
            )
            if not _TOKEN_CHARACTERS.fullmatch(value):
                raise ValueError(
                    "SEAL_AUTH_TOKEN must be printable ASCII without spaces (it travels in an HTTP header); "
                    "generate one with `openssl rand -hex 24`"
                )
        return self


@dataclass(frozen=True)
class TlsPem:
    """The PEM bytes of the TLS files, read once at start-up (gRPC takes bytes, not paths)."""

    ca: bytes | None
    cert: bytes | None
    key: bytes | None


class TlsSettings(BaseSettings):
    """TLS on every hop of this process. `SEAL_TLS_*`; none set: plaintext (fine on loopback only).

    One lab CA signs every certificate (README "Two machines" shows how to make them). Serving (a gRPC
    service, the coordinator's HTTPS), a process presents `cert_file` and `key_file`; calling (the
    coordinator calling the services, the CLI, the health probes), it checks the server against `ca_file`
    and, when the server asks for one (mutual TLS), presents the same certificate. So a certificate names
    every host its process is reached by, and allows both server and client use.
    """

    model_config = SettingsConfigDict(env_prefix="SEAL_TLS_", extra="ignore")

    #: This process's certificate (PEM, then any intermediates): what it serves, and its client certificate.
    cert_file: Path | None = Field(
        default=None,
        description="This process's certificate (PEM, then any intermediates): what it serves, and its client certificate under mutual TLS. Any `SEAL_TLS_*` file set: every hop of the process speaks TLS.",
    )
    #: The certificate's private key (PEM, not encrypted).
    key_file: Path | None = Field(
        default=None, description="The certificate's private key (PEM, not encrypted)."
    )
    #: The lab CA (PEM): clients check servers against it, and servers check clients under mutual TLS.
    #: Unset: clients trust the system's CAs.
    ca_file: Path | None = Field(
        default=None,
        description="The lab CA (PEM): clients check servers against it, and servers check clients under mutual TLS. Unset: clients trust the system's CAs.",
    )
    #: Servers require a client certificate signed by `ca_file` (mutual TLS).
    client_auth: bool = Field(
        default=False, description="Servers require a client certificate signed by the CA (mutual TLS)."
    )

    _pem: TlsPem = PrivateAttr(default_factory=lambda: TlsPem(None, None, None))

    @model_validator(mode="after")
    def _files(self) -> TlsSettings:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError(
                "set SEAL_TLS_CERT_FILE and SEAL_TLS_KEY_FILE together (a certificate and its key)"
            )
        if self.client_auth and self.ca_file is None:
            raise ValueError(
                "SEAL_TLS_CLIENT_AUTH=true needs SEAL_TLS_CA_FILE: the CA that signed the clients' certificates"
            )
        # Parsed by ssl here, so a wrong file is named at start-up, not in a handshake error later.
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        if self.ca_file is not None:
            ca = self.ca_file
            load_or_explain(f"SEAL_TLS_CA_FILE {str(ca)!r}", lambda: context.load_verify_locations(cafile=ca))
        if self.cert_file is not None and self.key_file is not None:
            cert, key = self.cert_file, self.key_file
            load_or_explain(
                f"SEAL_TLS_CERT_FILE {str(cert)!r} with SEAL_TLS_KEY_FILE {str(key)!r}",
                lambda: context.load_cert_chain(cert, key, password=_no_password),
            )
        self._pem = TlsPem(_read(self.ca_file), _read(self.cert_file), _read(self.key_file))
        return self

    @property
    def enabled(self) -> bool:
        return any(path is not None for path in (self.cert_file, self.key_file, self.ca_file))

    @property
    def serves(self) -> bool:
        """A certificate and key to serve with."""
        return self.cert_file is not None and self.key_file is not None

    @property
    def pem(self) -> TlsPem:
        return self._pem

    def client_context(self) -> ssl.SSLContext:
        """An SSL context for HTTPS clients: the server checked against the CA, this certificate presented."""
        context = ssl.create_default_context(cafile=self.ca_file)
        if self.serves:
            context.load_cert_chain(self.cert_file, self.key_file, password=_no_password)
        return context


def _no_password() -> bytes:
    raise ValueError(
        "the key file is encrypted; seal-lab needs it unencrypted (protect it by file permissions)"
    )


def _read(path: Path | None) -> bytes | None:
    if path is None:
        return None
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ValueError(f"cannot read {str(path)!r}: {exc.strerror}") from None


@dataclass(frozen=True)
class Security:
    """What one process checks and presents on every hop, passed from its entry point to whatever serves or
    calls. `Security()`: no token, plaintext (tests, and services on loopback)."""

    token: SecretStr | None = None
    tls: TlsSettings | None = None

    @classmethod
    def from_settings(cls, auth: AuthSettings, tls: TlsSettings) -> Security:
        return cls(auth.token, tls if tls.enabled else None)

    @property
    def token_value(self) -> str | None:
        return self.token.get_secret_value() if self.token is not None else None


def is_loopback(host: str) -> bool:
    """True when `host` (a bind address or a host name; IPv6 with or without brackets) reaches this machine
    only: 127.0.0.0/8, ::1 or `localhost`. Names are not resolved, so any other name counts as exposed, and so
    do "", 0.0.0.0 and :: (every interface)."""
    name = host.strip().removeprefix("[").removesuffix("]").rstrip(".").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def startup_problem(host: str, security: Security) -> str | None:
    """Why a server listening on `host` with `security` must not start, or None."""
    if security.tls is not None and not security.tls.serves:
        return (
            "TLS is configured (SEAL_TLS_CA_FILE) but this server has no certificate: "
            "set SEAL_TLS_CERT_FILE and SEAL_TLS_KEY_FILE"
        )
    if security.token is None and not is_loopback(host):
        return (
            f"refusing to listen on {host or '(every interface)'} without a token, where anyone who reaches it "
            "could use it: set SEAL_AUTH_TOKEN (or SEAL_AUTH_TOKEN_FILE) here and on every client "
            "(`openssl rand -hex 24`), or listen on 127.0.0.1"
        )
    return None


def refuse_unsafe_start(program: str, host: str, security: Security) -> None:
    """For entry points, before anything loads: exit code 2 with one line when `startup_problem` finds one."""
    if (problem := startup_problem(host, security)) is not None:
        _exit(program, [problem])


def security_from_environment(program: str) -> Security:
    """For entry points only (library code receives a `Security`): the token and TLS settings from the
    environment. A bad value ends the process with exit code 2 and one line per problem, no traceback."""
    problems: list[str] = []
    built: list[BaseSettings] = []
    for settings_class in (AuthSettings, TlsSettings):
        try:
            built.append(settings_class())
        except ValidationError as exc:
            prefix = str(settings_class.model_config.get("env_prefix", ""))
            for error in exc.errors(include_input=False, include_url=False):
                message = error["msg"].removeprefix("Value error, ")
                field = "".join(str(part) for part in error["loc"][:1])
                problems.append(f"{(prefix + field).upper()}: {message}" if field else message)
    if problems:
        _exit(program, problems)
    auth, tls = built
    assert isinstance(auth, AuthSettings) and isinstance(tls, TlsSettings)
    return Security.from_settings(auth, tls)


def _exit(program: str, problems: list[str]) -> NoReturn:
    for problem in problems:
        sys.stderr.write(f"{program}: {problem}\n")
    raise SystemExit(2)
