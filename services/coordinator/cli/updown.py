"""`seal-lab up` / `seal-lab down`: the four services on loopback, left running after `up` returns.

`up` starts them through the launcher (detached), waits until all are ready and records what `down` needs in
a state file in the work directory: pids, ports and log paths (never the token: the services inherit it from
the environment, as the CLI reads it). `down` stops the processes the file names (SIGTERM, then SIGKILL after
a grace period) and removes it. A process counts as the stack's only while it runs the module it was started
as (on Linux, /proc/PID/cmdline), so a pid reused by another program is never signalled.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from pydantic import BaseModel, ValidationError

from .api_client import console, fail, out
from .demo import require_model_extra

STATE_FILE = "stack.json"
DEFAULT_WORKDIR = Path(".seal/stack")
STOP_TIMEOUT_SECONDS = 20.0
KILL_TIMEOUT_SECONDS = 5.0
_PROC = Path("/proc")

Workdir = Annotated[Path, typer.Option(help="store, logs and the stack's state file")]


class ServiceProcess(BaseModel):
    pid: int
    port: int
    log: str


class StackState(BaseModel):
    """The state file: what `down` stops and what a second `up` reports."""

    coordinator_url: str
    services: dict[str, ServiceProcess]
    started_at: str


class StateFileError(Exception):
    pass


def state_path(workdir: Path) -> Path:
    return workdir / STATE_FILE


def read_state(workdir: Path) -> StackState | None:
    path = state_path(workdir)
    try:
        return StackState.model_validate_json(path.read_bytes())
    except FileNotFoundError:
        return None
    except (OSError, ValidationError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not a seal-lab stack state file"
        raise StateFileError(f"{path}: {reason}") from None


def write_state(workdir: Path, state: StackState) -> None:
    """Written to a temporary file and renamed, so a reader never sees half a file."""
    path = state_path(workdir)
    temporary = path.with_suffix(".tmp")
    temporary.write_text(state.model_dump_json(indent=1), encoding="utf-8")
    temporary.replace(path)


def is_running(pid: int, service: str) -> bool:
    """Whether `pid` is alive (not a zombie) and, where /proc tells, still runs `services.<service>`."""
    if not _PROC.is_dir():
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    try:
        stat = (_PROC / str(pid) / "stat").read_text()
        command = (_PROC / str(pid) / "cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    state = stat.rpartition(")")[2].split()[0]  # the name in parentheses may hold spaces
    return state not in ("Z", "X") and f"services.{service}".encode() in command


def running(state: StackState) -> dict[str, int]:
    return {name: s.pid for name, s in state.services.items() if is_running(s.pid, name)}


def stop_processes(processes: dict[str, int], timeout: float | None = None) -> list[str]:
    """SIGTERM each (the services drain), wait up to `timeout` (default STOP_TIMEOUT_SECONDS), SIGKILL what
    is left. Returns the names of the killed."""
    timeout = STOP_TIMEOUT_SECONDS if timeout is None else timeout
    for pid in processes.values():
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    killed: list[str] = []
    for sig, wait in ((signal.SIGKILL, timeout), (None, KILL_TIMEOUT_SECONDS)):
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and any(is_running(p, n) for n, p in processes.items()):
            time.sleep(0.2)
        left = {n: p for n, p in processes.items() if is_running(p, n)}
        if sig is None or not left:
            break
        for name, pid in left.items():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
            killed.append(name)
    return killed


def _state_or_fail(workdir: Path) -> StackState | None:
    try:
        return read_state(workdir)
    except StateFileError as exc:
        fail(f"{exc}; check for seal-lab processes and remove the file")
    return None


def up(
    workdir: Workdir = DEFAULT_WORKDIR,
    port: Annotated[int, typer.Option(help="the coordinator's port on 127.0.0.1")] = 8000,
) -> None:
    """Start the four services on loopback with a local store and leave them running (stop: `seal-lab down`).
    Needs the model extra."""
    require_model_extra("up")
    from seal_lab.security import security_from_environment

    from .launcher import LocalStack

    security = security_from_environment("seal-lab")  # the services inherit SEAL_AUTH_TOKEN and SEAL_TLS_*
    workdir = workdir.resolve()
    state = _state_or_fail(workdir)
    if state is not None:
        alive = running(state)
        if alive:
            console.print(
                f"a stack is already running at {state.coordinator_url} ({len(alive)} of "
                f"{len(state.services)} services up); stop it with: seal-lab down --workdir {workdir}"
            )
            raise typer.Exit(1)
        state_path(workdir).unlink(missing_ok=True)
        console.print(f"removed a stale state file ({state_path(workdir)}): its processes had exited")

    workdir.mkdir(parents=True, exist_ok=True)
    try:
        stack = LocalStack(workdir, console, security=security, coordinator_port=port, detached=True)
    except RuntimeError as exc:
        fail(f"{exc}: choose another one with --port")

    def record() -> None:
        services = {
            name: ServiceProcess(pid=process.pid, port=stack.ports[name], log=str(stack.log_path(name)))
            for name, process in stack.processes.items()
        }
        started = datetime.now(UTC).isoformat(timespec="seconds")
        state = StackState(coordinator_url=stack.coordinator_url, services=services, started_at=started)
        write_state(workdir, state)

    try:
        stack.start(on_started=record)
    except (RuntimeError, KeyboardInterrupt) as exc:
        stack.stop()
        state_path(workdir).unlink(missing_ok=True)
        fail(f"the stack did not start: {exc}" if isinstance(exc, RuntimeError) else "interrupted")
    stop = "seal-lab down" if workdir == DEFAULT_WORKDIR else f"seal-lab down --workdir {workdir}"
    console.print(f"the stack runs in the background; logs in {stack.logs}; stop it with: {stop}")
    out.print(f"coordinator: {stack.coordinator_url}")
    # The web UI: same server; with SEAL_AUTH_TOKEN set its login form asks for the token.
    out.print(f"web UI: {stack.coordinator_url}/ui")
    out.print(f"export SEAL_COORDINATOR_URL={stack.coordinator_url}")


def down(workdir: Workdir = DEFAULT_WORKDIR) -> None:
    """Stop the services `seal-lab up` started in this work directory."""
    workdir = workdir.resolve()
    state = _state_or_fail(workdir)
    if state is None:
        out.print(f"no stack is running from {workdir} (no {STATE_FILE} there)")
        return
    alive = running(state)
    killed = stop_processes(alive)
    state_path(workdir).unlink(missing_ok=True)
    if not alive:
        out.print(f"no service was still running; removed the stale {state_path(workdir)}")
        return
    forced = f" ({', '.join(killed)} killed after {STOP_TIMEOUT_SECONDS:.0f}s)" if killed else ""
    out.print(f"stopped {', '.join(alive)} at {state.coordinator_url}{forced}")
