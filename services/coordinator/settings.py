"""Coordinator settings: `SEAL_COORDINATOR_*`, and the forms their values take (a trainer address is
`host:port` or a `dns:///name:port` target, which engine/discovery.py resolves)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from pydantic import Field, field_validator
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

    host: str = "127.0.0.1"
    port: int = 8000
    # The names the API answers to (the request's Host header; any other gets 400), so that a web page whose
    # own name an attacker points at 127.0.0.1 (DNS rebinding) cannot reach it. Comma list: add the names
    # clients use (compose: `coordinator`, a machine's name). `*.example.org` allows subdomains, `*` any name.
    allowed_hosts: Annotated[list[str], NoDecode] = ["localhost", "127.0.0.1", "[::1]"]
    # `host:port`, or `dns:///name:port`: gRPC resolves the name and spreads calls over every address it has
    # (round robin), picking up replicas that appear when it resolves again (after a connection drops).
    # `/docs`, `/redoc` and `/openapi.json` without the token. Off: they need the token like `/v1` (open
    # anyway when no SEAL_AUTH_TOKEN is set). A browser sends no bearer token, so set it to read `/docs` there.
    public_docs: bool = False
    generator_address: str = "127.0.0.1:50051"
    # Comma-separated; jobs are spread over every trainer listed. A `dns:///name:port` entry is every address
    # the name resolves to (a Kubernetes headless Service), resolved again every discovery interval: trainers
    # that appear get jobs, those that go away get none (discovery.py, clients.py's TrainerPool).
    trainer_addresses: Annotated[list[str], NoDecode] = ["127.0.0.1:50052"]
    evaluator_address: str = "127.0.0.1:50053"
    discovery_interval_seconds: float = Field(default=10.0, gt=0)
    # Generate (Evaluate) calls in flight at once. Each service runs one model job at a time, so 1 per
    # replica: with a `dns:///` address over N replicas, N lets them work together; more only queues there.
    generator_concurrency: int = Field(default=1, ge=1)
    evaluator_concurrency: int = Field(default=1, ge=1)
    info_timeout_seconds: float = 10.0
    generate_timeout_seconds: float = 1800.0
    train_timeout_seconds: float = 3600.0
    evaluate_timeout_seconds: float = 1800.0
    # A retryable failure (service down, restarting) is retried with capped exponential backoff.
    max_attempts: int = 60
    initial_backoff_seconds: float = 1.0
    max_backoff_seconds: float = 15.0
    # Passages in flight at once. With 2, passage i+1 generates (or is evaluated) while passage i trains, so
    # no service idles while another works; each service still runs one model job at a time (the clients
    # queue generations and evaluations; a trainer takes as many Train calls as it groups). Results are kept
    # per passage, so the order in which passages finish does not matter. 1 runs the phases strictly one
    # after another. On one machine the services share its cores: the demo launcher splits them.
    max_concurrent_passages: int = Field(default=2, ge=1)
    resume_unfinished_runs: bool = True
    # Budgets (budget.py), checked when a run is created: beyond a per-run one the run is refused (422), beyond
    # the total of the unfinished runs executing here it must wait (429). Jobs are the run's `jobs_total`;
    # training tokens an upper bound on what its trainings process (under the trainer's default limits). The
    # defaults take benchmarks/conditions.py (N=40 on a CPU: 386 jobs, 2.3 M tokens; the GPU preset, N=200:
    # 8,052 jobs, 0.63 G tokens) with room to spare, and refuse what one request could plan before (two
    # million jobs).
    max_jobs_per_run: int = Field(default=20_000, ge=1)
    max_train_tokens_per_run: int = Field(default=2_000_000_000, ge=1)
    max_active_jobs: int = Field(default=50_000, ge=1)
    max_active_train_tokens: int = Field(default=10_000_000_000, ge=1)
    # Runs one client may start (create or resume) at once, then how many a second (ratelimit.py): beyond
    # them 429 `rate_limited` with Retry-After. A client is the bearer token when there is one (all its
    # holders together), else the client's address.
    run_start_burst: int = Field(default=20, ge=1)
    run_start_rate_per_second: float = Field(default=1.0, gt=0)
    # Checked before any passage is parsed, `limit` or not (admission.py); at most limits.py's ceiling.
    max_passages_per_run: int = Field(default=500, ge=1, le=MAX_PASSAGES_PER_REQUEST)
    # A request body over this many bytes is refused (413) before it is read (limits.py).
    max_body_bytes: int = Field(default=DEFAULT_MAX_BODY_BYTES, ge=1024)
    # Service retries one run may spend over all its calls while it executes (a resume starts afresh), so a
    # service that keeps failing and coming back cannot keep a run retrying forever; each retry waits a
    # random share (full jitter) of the capped exponential backoff.
    max_retries_per_run: int = Field(default=1000, ge=0)
    # Adapters per Evaluate call; a passage with more is evaluated in several calls. At most the
    # evaluator's SEAL_EVALUATOR_MAX_ADAPTERS_PER_REQUEST (64 by default).
    evaluate_max_adapters_per_call: int = Field(default=64, ge=1)
    # The object store: while it is away (down, hanging, full) runs pause, up to this long, then fail
    # (resumable). Its individual calls are bounded by SEAL_STORE_S3_*_TIMEOUT_SECONDS.
    store_outage_max_seconds: float = Field(default=86400.0, gt=0)
    # One coordinator per run when several share a store: a run's lease expires this long after its holder
    # last renewed it (renewed every third of it); then another coordinator takes the run over.
    lease_ttl_seconds: float = Field(default=30.0, gt=0)
    # At start-up the API waits up to this long for the store and the recorded runs, then serves anyway
    # (/healthz answers 503 until the runs are loaded).
    startup_wait_seconds: float = Field(default=10.0, ge=0)
    # Names this coordinator in leases; default: hostname, process id and a random suffix (a restart on the
    # same host then takes over its predecessor's runs at once). Set it only to a name unique in the lab.
    instance_id: str = ""

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
