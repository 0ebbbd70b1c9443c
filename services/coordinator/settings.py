"""Coordinator settings: `SEAL_COORDINATOR_*`, and the forms their values take (a trainer address is
`host:port` or a `dns:///name:port` target, which engine/discovery.py resolves)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from .run.limits import DEFAULT_MAX_BODY_BYTES, MAX_PASSAGES_PER_REQUEST

#: gRPC's own form of a DNS target (https://github.com/grpc/grpc/blob/master/doc/naming.md).
DNS_PREFIX = "dns:///"


@dataclass(frozen=True)
class DnsTarget:
    """A `dns:///host:port` entry: the trainers are every address `host` resolves to, on `port`."""

    host: str
    port: int

    @property
    def text(self) -> str:
        return f"{DNS_PREFIX}{self.host}:{self.port}"


def parse_target(entry: str) -> DnsTarget | None:
    """The DNS target an address list entry names; None for a plain `host:port` (used as it is).

    Raises ValueError for a `dns:` entry that is not `dns:///host:port` (the settings validator shows it).
    """
    if not entry.startswith("dns:"):
        return None
    rest = entry.removeprefix(DNS_PREFIX)
    host, _, port = rest.rpartition(":")
    if not entry.startswith(DNS_PREFIX) or not host or "/" in host or not port.isdigit():
        raise ValueError(
            f"{entry!r}: a DNS entry is `dns:///name:port` (gRPC's form, three slashes, a port), "
            "e.g. dns:///trainer.seal.svc.cluster.local:50052"
        )
    if not 0 < int(port) < 65536:
        raise ValueError(f"{entry!r}: port {port} is out of range")
    return DnsTarget(host.strip("[]"), int(port))


class CoordinatorSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SEAL_COORDINATOR_", extra="ignore")

    host: str = Field(
        default="127.0.0.1",
        description="HTTP bind address; beyond loopback `SEAL_AUTH_TOKEN` is needed, as for the gRPC services.",
    )
    port: int = Field(default=8000, description="HTTP port.")
    # The names the API answers to (the request's Host header; any other gets 400), so that a web page whose
    # own name an attacker points at 127.0.0.1 (DNS rebinding) cannot reach it. Comma list: add the names
    # clients use (compose: `coordinator`, a machine's name). `*.example.org` allows subdomains, `*` any name.
    allowed_hosts: Annotated[list[str], NoDecode] = Field(
        default=["localhost", "127.0.0.1", "[::1]"],
        description="The names the API answers to (the `Host` header; any other gets 400), against DNS rebinding. Add the names clients use; `*.example.org` allows subdomains, `*` any name.",
    )
    # `host:port`, or `dns:///name:port`: gRPC resolves the name and spreads calls over every address it has
    # (round robin), picking up replicas that appear when it resolves again (after a connection drops).
    # `/docs`, `/redoc` and `/openapi.json` without the token. Off: they need the token like `/v1` (open
    # anyway when no SEAL_AUTH_TOKEN is set). A browser sends no bearer token, so set it to read `/docs` there.
    public_docs: bool = Field(
        default=False,
        description="Serve `/docs`, `/redoc` and `/openapi.json` without the token (a browser sends none); off, they need it like `/v1`.",
    )
    # The web UI (`/ui`) keeps its sign-in in a cookie signed with this key (api/session.py). Unset, the key is
    # derived from SEAL_AUTH_TOKEN; set it to keep sessions apart from the token or across token holders.
    ui_session_secret: SecretStr | None = Field(
        default=None,
        description="Signs the web UI's session cookie (`/ui`). Unset: derived from `SEAL_AUTH_TOKEN` (random per process when there is no token).",
    )
    generator_address: str = Field(
        default="127.0.0.1:50051",
        description="The generator: `host:port`, or `dns:///name:port` to spread calls over every replica the name resolves to (round robin).",
    )
    # Comma-separated; jobs are spread over every trainer listed. A `dns:///name:port` entry is every address
    # the name resolves to (a Kubernetes headless Service), resolved again every discovery interval: trainers
    # that appear get jobs, those that go away get none (discovery.py, clients.py's TrainerPool).
    trainer_addresses: Annotated[list[str], NoDecode] = Field(
        default=["127.0.0.1:50052"],
        description="Comma list of trainers; jobs are spread over all. A `dns:///name:port` entry is every address the name resolves to, resolved again while the coordinator runs.",
    )
    evaluator_address: str = Field(
        default="127.0.0.1:50053",
        description="The evaluator: `host:port`, or `dns:///name:port` (round robin over its replicas).",
    )
    discovery_interval_seconds: float = Field(
        default=10.0,
        gt=0,
        description="How often `dns:///` trainer entries are resolved again (and at every run's start).",
    )
    # Generate (Evaluate) calls in flight at once. Each service runs one model job at a time, so 1 per
    # replica: with a `dns:///` address over N replicas, N lets them work together; more only queues there.
    generator_concurrency: int = Field(
        default=1,
        ge=1,
        description="Generate calls in flight at once: the generator's replica count behind a `dns:///` name.",
    )
    evaluator_concurrency: int = Field(
        default=1,
        ge=1,
        description="Evaluate calls in flight at once: the evaluator's replica count behind a `dns:///` name.",
    )
    info_timeout_seconds: float = Field(default=10.0, description="Deadline of a `GetInfo` call.")
    generate_timeout_seconds: float = Field(
        default=1800.0, description="Deadline of a `Generate` or `Import` call."
    )
    train_timeout_seconds: float = Field(default=3600.0, description="Deadline of a `Train` call.")
    evaluate_timeout_seconds: float = Field(default=1800.0, description="Deadline of an `Evaluate` call.")
    # A retryable failure (service down, restarting) is retried with capped exponential backoff.
    max_attempts: int = Field(
        default=60, description="Attempts of one call while a service is down or restarting."
    )
    initial_backoff_seconds: float = Field(
        default=1.0,
        description="First backoff between attempts; it doubles up to the maximum, and each wait is a random share of it.",
    )
    max_backoff_seconds: float = Field(default=15.0, description="Longest backoff between attempts.")
    # Passages in flight at once. With 2, passage i+1 generates (or is evaluated) while passage i trains, so
    # no service idles while another works; each service still runs one model job at a time (the clients
    # queue generations and evaluations; a trainer takes as many Train calls as it groups). Results are kept
    # per passage, so the order in which passages finish does not matter. 1 runs the phases strictly one
    # after another. On one machine the services share its cores: the demo launcher splits them.
    max_concurrent_passages: int = Field(
        default=2,
        ge=1,
        description="Passages in flight: passage i+1 generates while passage i trains; 1 makes multi-passage runs reproducible bit for bit in one process.",
    )
    resume_unfinished_runs: bool = Field(
        default=True, description="At start-up, resume the unfinished runs recorded in the store."
    )
    # Budgets (budget.py), checked when a run is created: beyond a per-run one the run is refused (422), beyond
    # the total of the unfinished runs executing here it must wait (429). Jobs are the run's `jobs_total`;
    # training tokens an upper bound on what its trainings process (under the trainer's default limits). The
    # defaults take benchmarks/conditions.py (N=40 on a CPU: 386 jobs, 2.3 M tokens; the GPU preset, N=200:
    # 8,052 jobs, 0.63 G tokens) with room to spare, and refuse what one request could plan before (two
    # million jobs).
    max_jobs_per_run: int = Field(
        default=20_000,
        ge=1,
        description="A run that plans more jobs is refused at creation (422, with the numbers).",
    )
    max_train_tokens_per_run: int = Field(
        default=2_000_000_000,
        ge=1,
        description="A run whose trainings may process more tokens (an upper bound) is refused at creation (422).",
    )
    max_active_jobs: int = Field(
        default=50_000,
        ge=1,
        description="Jobs of every unfinished run this coordinator executes; beyond it a new run (or a resume) gets 429.",
    )
    max_active_train_tokens: int = Field(
        default=10_000_000_000,
        ge=1,
        description="Training tokens of every unfinished run this coordinator executes; beyond it a new run (or a resume) gets 429.",
    )
    # Runs one client may start (create or resume) at once, then how many a second (ratelimit.py): beyond
    # them 429 `rate_limited` with Retry-After. A client is the bearer token when there is one (all its
    # holders together), else the client's address.
    run_start_burst: int = Field(
        default=20,
        ge=1,
        description="Runs one client may start (create or resume) at once; beyond it 429 `rate_limited` with `Retry-After`.",
    )
    run_start_rate_per_second: float = Field(
        default=1.0,
        gt=0,
        description="Runs one client may start per second after the burst. A client is the bearer token when one is set, else its address.",
    )
    # Checked before any passage is parsed, `limit` or not (admission.py); at most limits.py's ceiling.
    max_passages_per_run: int = Field(
        default=500,
        ge=1,
        le=MAX_PASSAGES_PER_REQUEST,
        description="Passages one request may send (counted before parsing, `limit` or not).",
    )
    # A request body over this many bytes is refused (413) before it is read (limits.py).
    max_body_bytes: int = Field(
        default=DEFAULT_MAX_BODY_BYTES,
        ge=1024,
        description="A larger request body is refused with 413 before it is read.",
    )
    # Service retries one run may spend over all its calls while it executes (a resume starts afresh), so a
    # service that keeps failing and coming back cannot keep a run retrying forever; each retry waits a
    # random share (full jitter) of the capped exponential backoff.
    max_retries_per_run: int = Field(
        default=1000,
        ge=0,
        description="Retries one run may spend over all its calls; then it fails (resumable).",
    )
    # Adapters per Evaluate call; a passage with more is evaluated in several calls. At most the
    # evaluator's SEAL_EVALUATOR_MAX_ADAPTERS_PER_REQUEST (64 by default).
    evaluate_max_adapters_per_call: int = Field(
        default=64,
        ge=1,
        description="More adapters are evaluated in several calls; at most the evaluator's `SEAL_EVALUATOR_MAX_ADAPTERS_PER_REQUEST`.",
    )
    # The object store: while it is away (down, hanging, full) runs pause, up to this long, then fail
    # (resumable). Its individual calls are bounded by SEAL_STORE_S3_*_TIMEOUT_SECONDS.
    store_outage_max_seconds: float = Field(
        default=86400.0,
        gt=0,
        description="How long a run stays paused for the object store before it fails (resumable).",
    )
    # One coordinator per run when several share a store: a run's lease expires this long after its holder
    # last renewed it (renewed every third of it); then another coordinator takes the run over.
    lease_ttl_seconds: float = Field(
        default=30.0,
        gt=0,
        description="Run leases when several coordinators share a store: a lease expires this long after its holder last renewed it.",
    )
    # At start-up the API waits up to this long for the store and the recorded runs, then serves anyway
    # (/healthz answers 503 until the runs are loaded).
    startup_wait_seconds: float = Field(
        default=10.0,
        ge=0,
        description="How long start-up waits for the store and the recorded runs before serving anyway (`/healthz` answers 503 until the runs are loaded).",
    )
    # Names this coordinator in leases; default: hostname, process id and a random suffix (a restart on the
    # same host then takes over its predecessor's runs at once). Set it only to a name unique in the lab.
    instance_id: str = Field(
        default="",
        description="Names this coordinator in leases. Empty: hostname, process id and a random suffix; set it only to a name unique in the lab.",
    )

    @field_validator("trainer_addresses", "allowed_hosts", mode="before")
    @classmethod
    def _split_comma_list(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("trainer_addresses")
    @classmethod
    def _trainer_entries(cls, addresses: list[str]) -> list[str]:
        if not addresses:
            raise ValueError("name at least one trainer (`host:port` or `dns:///name:port`)")
        for address in addresses:
            parse_target(address)  # a malformed `dns:` entry: ValueError saying the form
        return addresses

    @field_validator("allowed_hosts")
    @classmethod
    def _host_patterns(cls, hosts: list[str]) -> list[str]:
        if not hosts:
            raise ValueError("name at least one host (`*` allows any)")
        for host in hosts:
            if "*" in host[1:] or (host.startswith("*") and host != "*" and not host.startswith("*.")):
                raise ValueError(f"{host!r}: a wildcard is `*` alone or a leading `*.` (`*.example.org`)")
        return hosts


class MlflowSettings(BaseSettings):
    """`SEAL_MLFLOW_*`: MLflow tracking of every run (the `mlflow` extra; off unless a URI is set)."""

    model_config = SettingsConfigDict(env_prefix="SEAL_MLFLOW_", extra="ignore")

    tracking_uri: str = Field(
        default="",
        description="MLflow tracking server (`http://host:5000`); each run becomes an MLflow run, written as it goes. Empty: no tracking. Needs `pip install 'seal-lab[mlflow]'`.",
    )
    experiment: str = Field(
        default="seal-lab",
        min_length=1,
        description="The MLflow experiment the runs go into (made if missing).",
    )
    poll_seconds: float = Field(
        default=5.0, gt=0, description="How often the coordinator's runs are read for new progress to write."
    )
    max_backoff_seconds: float = Field(
        default=60.0,
        gt=0,
        description="Longest wait between attempts while the tracking server is down; writes wait in order, nothing is dropped, no run waits for them.",
    )
    git_commit: str = Field(
        default="",
        description="The `seal.git_commit` tag of every MLflow run. Empty: `git rev-parse HEAD` of the source tree when it is a checkout, else `unknown`.",
    )
