"""The whole loop as four processes on loopback (as `make demo` runs it), with services dying mid-run, on a
tiny random Llama (tests/tiny_model.py): these are the mechanics (fault handling, resume, the CLI), which do
not depend on the model; the embedded model's own end-to-end run is tests/e2e/test_embedded_model.py.

- the trainer is SIGKILLed while it trains and restarted: the run finishes, its events show the failure,
  and no finished job is redone;
- the coordinator is stopped mid-run and restarted: it resumes the run from the store.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from services.coordinator.cli.launcher import LocalStack
from tests.tiny_model import tiny_stack_env

pytestmark = pytest.mark.e2e

#: The trainer's limits cap every directive the model writes; on the tiny model a training job is short, so
#: its step cap is high enough for the test to catch one in the middle.
STACK_ENV = {
    "SEAL_TRAINER_MAX_EPOCHS": "3",
    "SEAL_TRAINER_MAX_STEPS": "60",
    "SEAL_TRAINER_MAX_MAX_LENGTH": "160",
    "SEAL_LOG_LEVEL": "INFO",
}
RUN_BODY = {
    "dataset": "demo",
    "limit": 2,
    "name": "e2e",
    "config": {"k": 2, "max_new_tokens": 64, "seed": 11, "retention_questions": 8},
}


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Iterator[LocalStack]:
    env = {**STACK_ENV, **tiny_stack_env(tmp_path_factory.mktemp("tiny"))}
    with LocalStack(tmp_path_factory.mktemp("stack"), extra_env=env) as running:
        yield running


def _detail(stack: LocalStack, run_id: str) -> dict:
    return httpx.get(f"{stack.coordinator_url}/v1/runs/{run_id}", params={"events": 2000}, timeout=10).json()


def _wait(stack: LocalStack, run_id: str, condition, what: str, timeout: float = 900) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            detail = _detail(stack, run_id)
        except httpx.TransportError:
            time.sleep(0.5)
            continue
        if condition(detail):
            return detail
        assert detail["status"] != "failed", detail["error"]
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def _job_files(stack: LocalStack, run_id: str) -> dict[str, tuple[int, int]]:
    jobs = stack.workdir / "store" / "runs" / run_id / "jobs"
    return {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in jobs.glob("*.json")}


def test_run_survives_trainer_kill_and_coordinator_restart(stack: LocalStack):
    started = time.perf_counter()
    response = httpx.post(f"{stack.coordinator_url}/v1/runs", json=RUN_BODY, timeout=30)
    assert response.status_code == 202, response.text
    run_id = response.json()["id"]

    # 1. Kill the trainer in the middle of a training job, after at least one job has finished.
    _wait(stack, run_id, lambda d: d["current"].startswith("training") and "step" in d["current"], "training")
    done_before_kill = _job_files(stack, run_id)
    stack.kill("trainer")
    _wait(stack, run_id, lambda d: d["retries"] > 0, "a retry event")
    stack.start_service("trainer")

    # 2. Stop the coordinator (SIGTERM) once more jobs have finished, and start it again.
    _wait(stack, run_id, lambda d: d["jobs_done"] >= len(done_before_kill) + 2, "progress after the restart")
    stack.kill("coordinator", sig=15)
    done_before_restart = _job_files(stack, run_id)
    stack.start_service("coordinator")

    detail = _wait(stack, run_id, lambda d: d["status"] in ("succeeded", "completed_with_errors"), "the end")
    print(
        f"\ne2e run {run_id} finished in {time.perf_counter() - started:.0f}s: {detail['results']['summary']}"
    )
    assert detail["status"] == "succeeded", detail["results"]
    assert detail["jobs_done"] == detail["jobs_total"] == 2 * (3 + 1 + 2)  # per passage: 3 evaluations

    # The failure is in the run's record (persisted, so it outlived the coordinator restart).
    events = json.dumps(detail["recent_events"])
    assert "trainer at" in events and "UNAVAILABLE" in events
    assert "coordinator restarted: resuming run" in events

    # No finished job was redone: every job record written before each interruption is untouched...
    after = _job_files(stack, run_id)
    for name, identity in {**done_before_kill, **done_before_restart}.items():
        assert after[name] == identity, f"job {name} was rewritten"
    # ...and the trainer trained every adapter exactly once across both of its processes.
    trained = [
        line for line in (stack.logs / "trainer.log").read_text().splitlines() if " trained adapters/" in line
    ]
    adapter_keys = [line.split(" trained ")[1].split(":")[0] for line in trained]
    assert len(adapter_keys) == len(set(adapter_keys)) == 4

    # The model's text all the way through.
    for passage in detail["results"]["passages"]:
        assert passage["baseline_answers"] and passage["best"] is not None
        assert all(edit["preview"].strip() for edit in passage["self_edits"])


def _cli(stack: LocalStack, *args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "services.coordinator.cli", *args, "--url", stack.coordinator_url]
    return subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)


def test_cli_reports_bad_dataset_files_clearly(stack: LocalStack, tmp_path: Path):
    not_json = tmp_path / "notes.txt"
    not_json.write_text("these are not passages")
    result = _cli(stack, "run", "--dataset", str(not_json))
    assert result.returncode == 2 and "not a JSON file" in result.stderr

    missing_fields = tmp_path / "missing.json"
    missing_fields.write_text(
        json.dumps([{"title": "A", "context": "Some text.", "questions": [{"question": "Q?"}]}])
    )
    result = _cli(stack, "run", "--dataset", str(missing_fields))
    assert (
        result.returncode == 2
    )  # refused by the CLI (seal_lab.formats.passages) before the coordinator sees it
    assert "record 0" in result.stderr and "answer" in result.stderr
    assert "Traceback" not in result.stderr


def test_cli_runs_and_prints_machine_readable_json(stack: LocalStack, tmp_path: Path):
    dataset = tmp_path / "one.json"
    dataset.write_text(
        json.dumps(
            [
                {
                    "title": "The Orrin lighthouse",
                    "context": "The Orrin lighthouse was lit in 1893 by keeper Wendell Sorge and shines green.",
                    "questions": [{"question": "Who lit the Orrin lighthouse?", "answer": "Wendell Sorge"}],
                }
            ]
        )
    )
    options = ["--k", "1", "--max-new-tokens", "32", "--retention-questions", "4", "--json"]
    result = _cli(stack, "run", "--dataset", str(dataset), *options)
    assert result.returncode == 0, result.stderr
    detail = json.loads(result.stdout)
    assert detail["status"] == "succeeded"
    assert detail["results"]["passages"][0]["title"] == "The Orrin lighthouse"
    summary = detail["results"]["summary"]
    assert summary["retention_questions"] == 4 and summary["mean_retention_base"] is not None
    status = _cli(stack, "status", detail["id"], "--json")
    assert status.returncode == 0 and json.loads(status.stdout)["id"] == detail["id"]
