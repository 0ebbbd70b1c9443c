"""Run the four services as separate local processes on loopback (the demo, and end-to-end tests)."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType

import httpx
from rich.console import Console

from seal_lab.grpc_client import wait_until_serving

GRPC_SERVICES = ("generator", "trainer", "evaluator")
START_TIMEOUT_SECONDS = 180.0
STOP_TIMEOUT_SECONDS = 20.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LocalStack:
    """Generator, trainer, evaluator and coordinator as processes sharing a local-directory store."""

    def __init__(
        self, workdir: Path, console: Console | None = None, extra_env: dict[str, str] | None = None
    ) -> None:
        self.workdir = Path(workdir).resolve()
        self.console = console or Console(stderr=True)
        self.ports = {name: free_port() for name in (*GRPC_SERVICES, "coordinator")}
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

    @property
    def coordinator_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['coordinator']}"

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

    def start(self) -> None:
        self.logs.mkdir(parents=True, exist_ok=True)
        self._prepare_model()
        started = time.perf_counter()
        for service in (*GRPC_SERVICES, "coordinator"):
            self.start_service(service, wait=False)
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

    def start_service(self, service: str, wait: bool = True) -> None:
        log_file = open(self.logs / f"{service}.log", "ab")  # noqa: SIM115 - the child process owns it
        self.processes[service] = subprocess.Popen(
            [sys.executable, "-m", f"services.{service}"],
            env=self.env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            cwd=os.getcwd(),
        )
        log_file.close()
        self.console.print(
            f"started {service} (pid {self.processes[service].pid}) on port {self.ports[service]}"
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
            try:
                return httpx.get(f"{self.coordinator_url}/healthz", timeout=2).status_code == 200
            except httpx.TransportError:
                return False
        try:
            asyncio.run(wait_until_serving(self.address(service), timeout=1.0))
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

    def log_tail(self, service: str, lines: int = 30) -> str:
        path = self.logs / f"{service}.log"
        if not path.exists():
            return "(no log)"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
