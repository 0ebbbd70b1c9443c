"""`seal-lab up` / `seal-lab down` for real, on a tiny random model: the stack outlives `up`, a second `up`
refuses, runs on stock SQuAD files (v1.1 JSON and squad JSON lines) complete through `seal-lab run
--dataset`, and `down` leaves no process alive."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from services.coordinator.cli import updown as stack
from services.coordinator.cli.launcher import free_ports
from tests.tiny_model import tiny_stack_env
from tests.unit.test_stock_datasets import rows_text, squad_row, squad_v1

pytestmark = pytest.mark.e2e

RUN_OPTIONS = [
    *("--k", "1", "--max-new-tokens", "16", "--eval-max-new-tokens", "4"),
    *("--retention-questions", "1", "--no-specificity-control", "--json"),
]


def seal_lab(env: dict[str, str], *args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "services.coordinator.cli", *args]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout, check=False)


def alive(pid: int) -> bool:
    psutil = pytest.importorskip("psutil")
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_up_run_stock_squad_files_and_down(tmp_path: Path):
    workdir = tmp_path / "stack"
    (port,) = free_ports(1)
    env = {
        **os.environ,
        **tiny_stack_env(tmp_path / "tiny"),
        "SEAL_TRAINER_MAX_EPOCHS": "1",
        "SEAL_TRAINER_MAX_STEPS": "2",
        "SEAL_TRAINER_MAX_MAX_LENGTH": "64",
    }
    env.pop("SEAL_COORDINATOR_URL", None)
    squad_json = tmp_path / "squad.json"
    document = squad_v1()
    document["data"] = document["data"][:1]
    squad_json.write_text(json.dumps(document))
    squad_jsonl = tmp_path / "squad.jsonl"
    squad_jsonl.write_bytes(rows_text([squad_row("Who built Foo?", "Bar", title="Rows")]))

    started = seal_lab(env, "up", "--workdir", str(workdir), "--port", str(port))
    state = stack.read_state(workdir)
    pids = [s.pid for s in state.services.values()] if state else []
    try:
        assert started.returncode == 0, started.stderr
        url = f"http://127.0.0.1:{port}"
        assert f"export SEAL_COORDINATOR_URL={url}" in started.stdout
        assert f"web UI: {url}/ui" in started.stdout
        assert len(pids) == 4 and all(alive(pid) for pid in pids)  # `up` has returned; they run on

        again = seal_lab(env, "up", "--workdir", str(workdir), "--port", str(port))
        assert again.returncode == 1 and f"already running at {url}" in " ".join(again.stderr.split())

        for dataset, title in ((squad_json, "Foo"), (squad_jsonl, "Rows")):
            result = seal_lab(env, "run", "--dataset", str(dataset), *RUN_OPTIONS, "--url", url)
            assert result.returncode == 0, result.stderr
            detail = json.loads(result.stdout)
            assert detail["status"] == "succeeded", detail["error"]
            assert [p["title"] for p in detail["results"]["passages"]] == [title]

        stopped = seal_lab(env, "down", "--workdir", str(workdir), timeout=60)
        assert stopped.returncode == 0, stopped.stderr
        assert not any(alive(pid) for pid in pids)
        assert not stack.state_path(workdir).exists()
        assert "no stack is running" in seal_lab(env, "down", "--workdir", str(workdir)).stdout
    finally:
        for pid in pids:  # whatever a failed assertion left behind
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
