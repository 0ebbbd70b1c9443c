"""Long benchmarks in parts, across sessions: a work folder that outlives the benchmark, and the run of every
piece (an option, a strategy) found again instead of posted again.

A benchmark that posts one run per piece keeps its local stack's store in a work folder per preset
(`.seal/bench/<name>`, git-ignored; `--workdir` chooses another) and in it a ledger, `bench-runs.json`: the id of
the run posted for each exact request (its hash, with the coordinator's address or "local"). Before posting a
piece, a rerun asks the coordinator about the run the ledger names:

- finished (succeeded, completed_with_errors): its results are read back; nothing runs again;
- unfinished (stopped with the stack: Ctrl-C, a timeout) or failed: resumed (`POST /v1/runs/{id}/resume`), and
  the coordinator goes on from its last finished job (records.py: one write-once record per job; a continual
  stream from its last finished step), so only the jobs in flight when it stopped are done again;
- cancelled, gone from the store, or never posted: a new run, recorded in the ledger before it is followed.

Why the same run and not a new one: the store is content-addressed, but a new run generates its self-edits
again (the generator keeps no cache), so a new run reuses earlier trainings and evaluations only if sampling
reproduces the same datasets byte for byte. Resuming the same run id depends on nothing of the kind.
The local stack runs with `resume_unfinished_runs` off, so the coordinator resumes only the piece asked for,
one at a time, and not also the pieces a narrower `--options`/`--strategies` left out. `--fresh` moves the work
folder aside (kept, named with the time) and starts in an empty one.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import conditions
import httpx
from rich.console import Console

from seal_lab.security import Security

T = TypeVar("T")

#: Where each preset's work folder lives by default (`.seal/` is git-ignored; `make clean` removes it).
BENCH_ROOT = Path(__file__).resolve().parents[1] / ".seal" / "bench"
LEDGER = "bench-runs.json"
#: The local stack's coordinator resumes no run by itself: the benchmark resumes the one it wants, when it wants.
LOCAL_STACK_ENV = {"SEAL_COORDINATOR_RESUME_UNFINISHED_RUNS": "false"}
FINISHED = ("succeeded", "completed_with_errors")


def add_resume_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument(
        "--fresh",
        action="store_true",
        help="start over: move the work folder aside (kept) and post every run anew",
    )
    return parser


def prepare_workdir(args: argparse.Namespace, name: str, console: Console) -> Path:
    """The work folder (`--workdir`, else `.seal/bench/<name>`), set on `args` and created; with `--fresh` an
    existing one is first moved aside to `<folder>.<time>`."""
    folder: Path = args.workdir or BENCH_ROOT / name
    if args.fresh and folder.exists():
        aside = folder.with_name(f"{folder.name}.{time.strftime('%Y%m%d-%H%M%S')}")
        folder.rename(aside)
        console.print(f"--fresh: the earlier work folder is now {aside} (delete it when done with it)")
    folder.mkdir(parents=True, exist_ok=True)
    args.workdir = folder
    holds = f"the runs posted to {args.url}" if args.url else "store, logs, runs posted"
    console.print(
        f"work folder ({holds}): {folder}\n"
        "  interrupted, the same command continues from there; --fresh starts over"
    )
    return folder


def coordinator_name(args: argparse.Namespace) -> str:
    """Which coordinator the ledger's run ids belong to: a local stack's port changes with every start."""
    return args.url or "local"


def request_key(coordinator: str, body: dict[str, Any]) -> str:
    """The hash of a run request on a coordinator: another flag, passage or option is another run."""
    text = json.dumps({"coordinator": coordinator, "body": body}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


class Ledger:
    """The runs a work folder's benchmark posted: request hash -> {run id, label, posted at}."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / LEDGER
        self.entries: dict[str, dict[str, Any]] = (
            json.loads(self.path.read_text()) if self.path.exists() else {}
        )

    def run_id(self, coordinator: str, body: dict[str, Any]) -> str | None:
        entry = self.entries.get(request_key(coordinator, body))
        return entry["run_id"] if entry else None

    def record(self, coordinator: str, body: dict[str, Any], label: str, run_id: str) -> None:
        """Written at once (a temporary file renamed over the ledger): the next session must find the run."""
        self.entries[request_key(coordinator, body)] = {
            "run_id": run_id,
            "label": label,
            "coordinator": coordinator,
            "posted_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
        }
        partial = self.path.with_name(f"{self.path.name}.partial")
        partial.write_text(json.dumps(self.entries, indent=1))
        os.replace(partial, self.path)


@dataclass(frozen=True)
class Piece:
    """A piece's run as the coordinator has it now, and how this session got it: "finished earlier" (read
    back), "resumed" or "new"."""

    detail: dict[str, Any]
    how: str


def obtain(
    client: httpx.Client,
    body: dict[str, Any],
    label: str,
    ledger: Ledger,
    coordinator: str,
    console: Console,
    follow: Callable[[httpx.Client, str, Console], dict[str, Any]] = conditions._follow,
) -> Piece:
    """The finished run of `body`: the ledger's run read back if it finished, resumed if it did not, else a new
    run; followed to its end."""
    run_id = ledger.run_id(coordinator, body)
    if run_id is not None:
        known = client.get(f"/v1/runs/{run_id}", params={"events": 2000})
        status = known.json().get("status") if known.status_code == 200 else None
        if status in FINISHED:
            console.print(f"{label}: run {run_id} finished earlier ({status}); its results are read back")
            return Piece(known.json(), "finished earlier")
        if known.status_code == 404:
            console.print(f"{label}: run {run_id} is not in this coordinator's store; a new run")
        elif status == "cancelled":
            console.print(f"{label}: run {run_id} was cancelled; a new run")
        elif known.status_code >= 400:
            console.print(f"[red]{label}: reading run {run_id}: {known.status_code} {known.text}")
            sys.exit(2)
        else:
            resumed = client.post(f"/v1/runs/{run_id}/resume")
            going = resumed.status_code < 400 or _code(resumed) in ("run_running", "run_finished")
            if going or "running on another coordinator" in resumed.text:
                console.print(f"{label}: run {run_id} ({status}) goes on from its last finished job")
                return Piece(follow(client, run_id, console), "resumed")
            if resumed.status_code == 429:
                console.print(f"[red]{label}: resuming run {run_id}: {resumed.text}")
                sys.exit(2)
            console.print(f"{label}: run {run_id} cannot resume ({resumed.text}); a new run")
    run_id = conditions.post_run(client, body, console)
    ledger.record(coordinator, body, label, run_id)
    return Piece(follow(client, run_id, console), "new")


def _code(response: httpx.Response) -> str | None:
    """An error answer's machine-readable code (api/errors.py), if it has one."""
    try:
        body = response.json()
    except ValueError:
        return None
    return body.get("code") if isinstance(body, dict) else None


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def on_coordinator_in_parts(
    args: argparse.Namespace, console: Console, security: Security, work: Callable[[str], T]
) -> T:
    """`work(url)` on --coordinator-url or a local stack in the work folder that resumes no run by itself.
    Interrupted (Ctrl-C, or SIGTERM as `timeout` sends), the stack stops cleanly, its runs stay unfinished in
    the store, and the benchmark says how to go on."""
    before = signal.signal(signal.SIGTERM, _interrupt)
    try:
        return conditions.on_coordinator(args, "", console, security, work, extra_env=LOCAL_STACK_ENV)
    except KeyboardInterrupt:
        console.print(
            f"[yellow]interrupted[/yellow]: finished runs and jobs stay in {args.workdir}; "
            "the same command goes on from there"
        )
        sys.exit(130)
    finally:
        signal.signal(signal.SIGTERM, before)
