"""`seal-lab up` / `down` bookkeeping without models: the state file, a second `up`, a stale file, stopping
by pid (SIGTERM, then SIGKILL) and never signalling a pid that runs another program. The launcher is a fake;
the "services" are sleeping Python processes whose command line names the service."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pytest
from typer.testing import CliRunner

from services.coordinator.cli import launcher
from services.coordinator.cli import main as cli
from services.coordinator.cli import updown as stack

SLEEPER = "import signal, time; signal.signal(signal.SIGTERM, signal.{}); print('ready', flush=True); time.sleep(60)"


def start_sleeper(service: str, ignore_term: bool = False) -> subprocess.Popen:
    code = SLEEPER.format("SIG_IGN" if ignore_term else "SIG_DFL")
    process = subprocess.Popen([sys.executable, "-c", code, f"services.{service}"], stdout=subprocess.PIPE)
    assert process.stdout is not None and process.stdout.readline() == b"ready\n"  # its handler is set
    return process


@pytest.fixture
def sleepers() -> Iterator[list[subprocess.Popen]]:
    started: list[subprocess.Popen] = []
    yield started
    for process in started:
        process.kill()
        process.wait()


def write_state(workdir: Path, pids: dict[str, int]) -> None:
    services = {name: stack.ServiceProcess(pid=pid, port=1, log="x.log") for name, pid in pids.items()}
    state = stack.StackState(coordinator_url="http://127.0.0.1:8123", services=services, started_at="now")
    workdir.mkdir(parents=True, exist_ok=True)
    stack.write_state(workdir, state)


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


class FakeStack:
    """Stands in for LocalStack: `start` "starts" four sleepers."""

    instances: ClassVar[list[FakeStack]] = []

    def __init__(self, workdir: Path, console, security=None, coordinator_port=None, detached=False):
        self.workdir, self.detached = workdir, detached
        self.ports = {"generator": 1, "trainer": 2, "evaluator": 3, "coordinator": coordinator_port}
        self.logs = workdir / "logs"
        self.processes: dict[str, subprocess.Popen] = {}
        self.coordinator_url = f"http://127.0.0.1:{coordinator_port}"
        FakeStack.instances.append(self)

    def start(self, on_started=None) -> None:
        self.processes = {name: start_sleeper(name) for name in self.ports}
        if on_started is not None:
            on_started()
        if self.ports["coordinator"] == FAILING_PORT:
            raise RuntimeError("coordinator not ready within 180s")

    def log_path(self, service: str) -> Path:
        return self.logs / f"{service}.log"

    def stop(self) -> None:
        for process in self.processes.values():
            process.kill()
            process.wait()


@pytest.fixture
def fake_launcher(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[FakeStack]]:
    monkeypatch.setattr(launcher, "LocalStack", FakeStack)
    monkeypatch.setattr(stack, "require_model_extra", lambda command: None)
    FakeStack.instances = []
    yield FakeStack.instances
    for fake in FakeStack.instances:
        for process in fake.processes.values():
            process.kill()
            process.wait()


FAILING_PORT = 8199


def invoke(*args: str):
    result = CliRunner().invoke(cli.app, list(args))
    return result, " ".join(result.output.split())


def test_up_records_the_stack_refuses_a_second_up_and_down_stops_it(fake_launcher, tmp_path: Path):
    workdir = tmp_path / "stack"
    result, output = invoke("up", "--workdir", str(workdir), "--port", "8123")
    assert result.exit_code == 0, output
    assert "export SEAL_COORDINATOR_URL=http://127.0.0.1:8123" in output
    assert "web UI: http://127.0.0.1:8123/ui" in output
    [fake] = fake_launcher
    assert fake.detached
    state = stack.read_state(workdir.resolve())
    assert state is not None
    assert {n: s.pid for n, s in state.services.items()} == {n: p.pid for n, p in fake.processes.items()}

    result, output = invoke("up", "--workdir", str(workdir))
    assert result.exit_code == 1
    assert "already running at http://127.0.0.1:8123" in output and len(fake_launcher) == 1

    result, output = invoke("down", "--workdir", str(workdir))
    assert result.exit_code == 0, output
    assert "stopped generator, trainer, evaluator, coordinator" in output
    for process in fake.processes.values():
        assert process.wait(timeout=5) == -signal.SIGTERM
    assert not stack.state_path(workdir.resolve()).exists()


def test_up_cleans_a_stale_state_file(fake_launcher, tmp_path: Path):
    write_state(tmp_path, dict.fromkeys(("generator", "trainer", "evaluator", "coordinator"), dead_pid()))
    result, output = invoke("up", "--workdir", str(tmp_path), "--port", "8124")
    assert result.exit_code == 0, output
    assert "removed a stale state file" in output
    state = stack.read_state(tmp_path)
    assert state is not None and state.coordinator_url == "http://127.0.0.1:8124"


def test_down_with_nothing_running_says_so(tmp_path: Path):
    result, output = invoke("down", "--workdir", str(tmp_path))
    assert result.exit_code == 0 and "no stack is running" in output

    write_state(tmp_path, {"generator": dead_pid()})
    result, output = invoke("down", "--workdir", str(tmp_path))
    assert result.exit_code == 0 and "no service was still running" in output
    assert not stack.state_path(tmp_path).exists()


def test_a_pid_running_another_program_is_not_the_stack(sleepers, tmp_path: Path):
    sleepers.append(start_sleeper("generator"))
    pid = sleepers[0].pid
    assert stack.is_running(pid, "generator")
    assert not stack.is_running(pid, "trainer")  # a reused pid: alive, but not this service
    write_state(tmp_path, {"trainer": pid})
    result, output = invoke("down", "--workdir", str(tmp_path))
    assert result.exit_code == 0 and "no service was still running" in output
    assert sleepers[0].poll() is None  # never signalled


def test_a_service_that_ignores_sigterm_is_killed(sleepers):
    sleepers.append(start_sleeper("trainer", ignore_term=True))
    killed = stack.stop_processes({"trainer": sleepers[0].pid}, timeout=0.5)
    assert killed == ["trainer"]
    assert sleepers[0].wait(timeout=5) == -signal.SIGKILL


def test_an_unreadable_state_file_is_an_error_not_a_trace(tmp_path: Path):
    stack.state_path(tmp_path).write_text("{not json")
    result, output = invoke("down", "--workdir", str(tmp_path))
    assert result.exit_code == 2
    assert "not a seal-lab stack state file" in output and "Traceback" not in output


def test_a_failed_up_stops_what_it_started_and_leaves_no_state_file(fake_launcher, tmp_path: Path):
    result, output = invoke("up", "--workdir", str(tmp_path), "--port", str(FAILING_PORT))
    assert result.exit_code == 2
    assert "the stack did not start: coordinator not ready within 180s" in output
    [fake] = fake_launcher
    assert all(process.poll() is not None for process in fake.processes.values())
    assert not stack.state_path(tmp_path).exists()


def test_up_on_a_busy_port_says_so(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.setattr(stack, "require_model_extra", lambda command: None)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result, output = invoke("up", "--workdir", str(tmp_path), "--port", str(port))
    assert result.exit_code == 2
    assert f"port {port} on 127.0.0.1 is in use: choose another one with --port" in output
