"""Run the four services as separate local processes on loopback: the one owner of starting them, for the
demo and end-to-end tests (stopped with the stack) and for `seal-lab up` (detached: they outlive the command)."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

import httpx
from rich.console import Console

from seal_lab.rpc.client import wait_until_serving
from seal_lab.security import Security

from ..settings import CoordinatorSettings

GRPC_SERVICES = ("generator", "trainer", "evaluator")
START_TIMEOUT_SECONDS = 180.0
STOP_TIMEOUT_SECONDS = 20.0
TORCH_THREADS_ENV = "SEAL_MODEL_TORCH_THREADS"
PASSAGES_ENV = "SEAL_COORDINATOR_MAX_CONCURRENT_PASSAGES"


def free_ports(count: int) -> list[int]:
    """`count` distinct free ports: every socket is held open until all are chosen (one at a time, the
    kernel may hand out the same port twice)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def usable_cores() -> int:
    """Cores this process may run on (its affinity mask, as under taskset or a container's cpuset)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def torch_threads(cores: int, concurrent_passages: int) -> dict[str, int]:
    """Torch CPU threads for each model service sharing `cores` cores, with that many passages in flight.

    A passage's phases run one after another, so each passage in flight keeps at most one service busy:
    with 2, the trainer trains one passage while the generator (the next passage) or the evaluator (the
    passage just trained) works on the other. So at most min(passages, 3) services compute at once, and
    which ones varies; the cores are split that many ways, so no combination asks for more threads than
    there are cores (torch's thread pools slow down sharply when oversubscribed). An even split also
    matches the work: on the 2-core reference run (benchmarks/results/conditions_cpu2.txt, round 0)
    training took 515 s against 240 s generating + 198 s evaluating, so the trainer on one side and the
    generator and evaluator on the other carry about the same load. The trainer, the busiest, gets what an
    uneven split leaves over. One passage at a time: one service works at once, and each may use every core.
    """
    busy = max(1, min(concurrent_passages, len(GRPC_SERVICES)))
    share = max(1, cores // busy)
    threads = dict.fromkeys(GRPC_SERVICES, share)
    threads["trainer"] = max(1, cores - (busy - 1) * share)
    return threads


def _concurrent_passages(env: dict[str, str]) -> int:
    default: int = CoordinatorSettings.model_fields["max_concurrent_passages"].default
    try:
        return int(env.get(PASSAGES_ENV, default))
    except ValueError:  # the coordinator refuses it at start-up, with the variable's name
        return default


class LocalStack:
    """Generator, trainer, evaluator and coordinator as processes sharing a local-directory store."""

    def __init__(
        self,
        workdir: Path,
        console: Console | None = None,
        extra_env: dict[str, str] | None = None,
        security: Security | None = None,
        coordinator_port: int | None = None,
        detached: bool = False,
    ) -> None:
        """`security`: how to reach the services once started (their token and TLS come from the
        environment they inherit; pass the same). `coordinator_port`: a fixed port (default: a free one).
        `detached`: each service in its own session, so that it outlives this process and its terminal."""
        self.workdir = Path(workdir).resolve()
        self.security = security or Security()
        self.console = console or Console(stderr=True)
        self.detached = detached
        if coordinator_port is not None and not port_is_free(coordinator_port):
            raise RuntimeError(f"port {coordinator_port} on 127.0.0.1 is in use")
        names = (*GRPC_SERVICES, "coordinator")
        self.ports = dict(zip(names, free_ports(len(names)), strict=True))
        while coordinator_port is not None and coordinator_port in self.ports.values():
            self.ports = dict(zip(names, free_ports(len(names)), strict=True))  # the kernel chose it: again
        if coordinator_port is not None:
            self.ports["coordinator"] = coordinator_port
        self.processes: dict[str, subprocess.Popen] = {}
        self.logs = self.workdir / "logs"
        self.env = {
            **os.environ,  # an entry point: the user's own SEAL_* settings still apply
            "PYTHONUNBUFFERED": "1",
            "SEAL_STORE_KIND": "local",
            "SEAL_STORE_LOCAL_ROOT": str(self.workdir / "store"),
            "SEAL_GENERATOR_PORT": str(self.ports["generator"]),
            "SEAL_TRAINER_PORT": str(self.ports["trainer"]),
            "SEAL_EVALUATOR_PORT": str(self.ports["evaluator"]),
            "SEAL_COORDINATOR_PORT": str(self.ports["coordinator"]),
            "SEAL_COORDINATOR_GENERATOR_ADDRESS": f"127.0.0.1:{self.ports['generator']}",
            "SEAL_COORDINATOR_TRAINER_ADDRESSES": f"127.0.0.1:{self.ports['trainer']}",
            "SEAL_COORDINATOR_EVALUATOR_ADDRESS": f"127.0.0.1:{self.ports['evaluator']}",
            **(extra_env or {}),
        }
        # Three model services on one machine: each gets its share of the cores, unless the user (or
        # extra_env) chose SEAL_MODEL_TORCH_THREADS, which then applies to every service as it stands.
        self.torch_threads: dict[str, int] = (
            {}
            if TORCH_THREADS_ENV in self.env
            else torch_threads(usable_cores(), _concurrent_passages(self.env))
        )

    @property
    def coordinator_url(self) -> str:
        tls = self.security.tls
        scheme = "https" if tls is not None and tls.serves else "http"
        return f"{scheme}://127.0.0.1:{self.ports['coordinator']}"

    def address(self, service: str) -> str:
        return f"127.0.0.1:{self.ports[service]}"

    def __enter__(self) -> LocalStack:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def start(self, on_started: Callable[[], None] | None = None) -> None:
        """Start the four and wait until all are ready; `on_started` runs once all are started, before the
        wait (`seal-lab up` records their pids then, so that `down` finds them even if `up` dies waiting)."""
        self.logs.mkdir(parents=True, exist_ok=True)
        self._prepare_model()
        started = time.perf_counter()
        for service in (*GRPC_SERVICES, "coordinator"):
            self.start_service(service, wait=False)
        if on_started is not None:
            on_started()
        for service in (*GRPC_SERVICES, "coordinator"):
            self.wait_ready(service)
        self.console.print(
            f"all four services ready in {time.perf_counter() - started:.1f}s (logs: {self.logs})"
        )

    def _prepare_model(self) -> None:
        """Convert the embedded model once before the services start, so none of them waits on the others."""
        command = [sys.executable, "-m", "services.coordinator.cli", "prepare-model"]
        with open(self.logs / "prepare-model.log", "ab") as log_file:
            result = subprocess.run(
                command, env=self.env, stdout=log_file, stderr=subprocess.STDOUT, check=False
            )
        if result.returncode != 0:
            raise RuntimeError(f"model preparation failed:\n{self.log_tail('prepare-model')}")

    def service_env(self, service: str) -> dict[str, str]:
        """The environment of one service's process: the stack's, plus its torch threads."""
        if service not in self.torch_threads:
            return self.env
        return {**self.env, TORCH_THREADS_ENV: str(self.torch_threads[service])}

    def start_service(self, service: str, wait: bool = True) -> None:
        log_file = open(self.logs / f"{service}.log", "ab")  # noqa: SIM115 - the child process owns it
        self.processes[service] = subprocess.Popen(
            [sys.executable, "-m", f"services.{service}"],
            env=self.service_env(service),
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            cwd=os.getcwd(),
            start_new_session=self.detached,
        )
        log_file.close()
        threads = f", {self.torch_threads[service]} torch threads" if service in self.torch_threads else ""
        self.console.print(
            f"started {service} (pid {self.processes[service].pid}) on port {self.ports[service]}{threads}"
        )
        if wait:
            self.wait_ready(service)

    def wait_ready(self, service: str, timeout: float = START_TIMEOUT_SECONDS) -> None:
        process = self.processes[service]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(
                    f"{service} exited with code {process.returncode}:\n{self.log_tail(service)}"
                )
            if self._ready(service):
                return
            time.sleep(0.3)
        raise RuntimeError(f"{service} not ready within {timeout:.0f}s:\n{self.log_tail(service)}")

    def _ready(self, service: str) -> bool:
        if service == "coordinator":
            tls = self.security.tls
            verify = tls.client_context() if tls is not None else True
            try:
                return (
                    httpx.get(f"{self.coordinator_url}/healthz", timeout=2, verify=verify).status_code == 200
                )
            except httpx.TransportError:
                return False
        try:
            asyncio.run(wait_until_serving(self.address(service), timeout=1.0, security=self.security))
        except TimeoutError:
            return False
        return True

    def kill(self, service: str, sig: int = signal.SIGKILL) -> None:
        process = self.processes[service]
        process.send_signal(sig)
        process.wait(timeout=STOP_TIMEOUT_SECONDS)

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_SECONDS
        for process in self.processes.values():
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def log_path(self, service: str) -> Path:
        return self.logs / f"{service}.log"

    def log_tail(self, service: str, lines: int = 30) -> str:
        path = self.logs / f"{service}.log"
        if not path.exists():
            return "(no log)"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
