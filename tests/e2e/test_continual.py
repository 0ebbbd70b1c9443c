"""A continual run end to end on a tiny random Llama (tests/tiny_model.py): started from the CLI
(`seal-lab run --continual`), its coordinator killed (SIGKILL) mid-stream and started again. The stream goes on
from its last finished step: no finished job record is rewritten and the trainer trains every step's adapter
once, each from the one before it; the matrix of the results is what the evaluator said for each step.
Mechanics only (the tiny model knows nothing)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from seal_lab.formats.passages import demo_passages, passages_to_json
from services.coordinator.cli.launcher import LocalStack
from tests.e2e.fresh_stack import SHORT_RUN_ENV
from tests.tiny_model import tiny_stack_env

pytestmark = pytest.mark.e2e

STEPS = 3


def _detail(stack: LocalStack, run_id: str) -> dict:
    return httpx.get(f"{stack.coordinator_url}/v1/runs/{run_id}", params={"events": 2000}, timeout=10).json()


def _wait(condition, what: str, timeout: float = 900) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.3)


def test_a_continual_stream_killed_mid_way_resumes_from_its_last_finished_step(tmp_path: Path) -> None:
    dataset = tmp_path / "passages.json"
    dataset.write_text(json.dumps(passages_to_json(demo_passages()[:STEPS])))
    env = {**SHORT_RUN_ENV, **tiny_stack_env(tmp_path / "tiny")}
    with LocalStack(tmp_path / "stack", extra_env=env) as stack:
        command = [
            sys.executable, "-m", "services.coordinator.cli", "run", "--continual", "--dataset", str(dataset),
            "--order", "2,0,1", "--max-new-tokens", "32", "--eval-max-new-tokens", "8", "--seed", "3",
            "--retention-questions", "4", "--no-follow", "--json", "--url", stack.coordinator_url,
        ]  # fmt: skip
        started = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
        assert started.returncode == 0, started.stderr[-3000:]
        run_id = json.loads(started.stdout)["id"]
        jobs = stack.workdir / "store" / "runs" / run_id / "jobs"

        def files() -> dict[str, bytes]:
            return {p.name: p.read_bytes() for p in jobs.glob("*.json")}

        # Kill the coordinator once step 0 is measured and step 1 has begun.
        _wait(lambda: any("-c0s1-" in name for name in files()), "step 1 to begin")
        stack.kill("coordinator", sig=signal.SIGKILL)
        before = files()
        assert not any("-c0s2-" in name for name in before)
        stack.start_service("coordinator")
        _wait(lambda: _detail(stack, run_id)["status"] not in ("queued", "running"), "the end")
        detail = _detail(stack, run_id)
        assert detail["status"] == "succeeded", detail["error"]
        after = files()
        assert all(after[name] == data for name, data in before.items())  # nothing finished was redone
        assert len(after) == detail["jobs_total"] == detail["jobs_done"]

        # One adapter per step, each trained once, each from the one before it.
        trains = [
            json.loads(after[f"{index:04d}-c0s{step}-train-0.json"]) for step, index in enumerate((2, 0, 1))
        ]
        keys = [t["adapter_key"] for t in trains]
        assert len(set(keys)) == STEPS
        trained = [
            line
            for line in (stack.logs / "trainer.log").read_text().splitlines()
            if " trained adapters/" in line
        ]
        assert len(trained) == STEPS
        for key, previous in zip(keys[1:], keys[:-1], strict=True):
            meta = json.loads((stack.workdir / "store" / key / "seal_adapter.json").read_text())
            assert meta["init_adapter_key"] == previous and meta["merge_init"] is False

        # The matrix is what the evaluator recorded for each step's model on each passage seen.
        stream = detail["results"]["continual"]["streams"][0]
        assert stream["steps_done"] == STEPS and [s["adapter_key"] for s in stream["steps"]] == keys
        for step, key in enumerate(keys):
            for row, index in enumerate((2, 0, 1)[: step + 1]):
                record = json.loads(after[f"{index:04d}-c0s{step}-accuracy.json"])
                assert stream["matrix"][row][step] == record["evaluations"][key]["mean"]["f1"]
        report = httpx.get(f"{stack.coordinator_url}/v1/runs/{run_id}/report", timeout=30).text
        assert "Accuracy matrix" in report
