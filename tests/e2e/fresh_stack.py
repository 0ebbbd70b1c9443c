"""One run on a fresh LocalStack (its own store), followed over HTTP to its end, and the trainer limits that
keep such a run short: the reproducibility checks (tests/e2e/test_rounds.py, test_embedded_model.py)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx

from services.coordinator.cli.launcher import LocalStack

#: Small enough for CI on two cores (the trainer's limits clamp the default directive's step budget too).
SHORT_RUN_ENV = {
    "SEAL_TRAINER_MAX_EPOCHS": "2",
    "SEAL_TRAINER_MAX_STEPS": "4",
    "SEAL_TRAINER_MAX_MAX_LENGTH": "160",
    "SEAL_LOG_LEVEL": "INFO",
}


def run_on_a_fresh_stack(
    workdir: Path, env: dict[str, str], body: dict[str, Any], timeout: float = 1500
) -> tuple[dict[str, Any], Path]:
    """POST `body` to a stack started in `workdir` with `env`; the run's detail once it ended, and the store."""
    with (
        LocalStack(workdir, extra_env=env) as stack,
        httpx.Client(base_url=stack.coordinator_url, timeout=30) as client,
    ):
        created = client.post("/v1/runs", json=body)
        assert created.status_code == 202, created.text
        run_id = created.json()["id"]
        deadline = time.monotonic() + timeout
        while (detail := client.get(f"/v1/runs/{run_id}").json())["status"] in ("queued", "running"):
            assert time.monotonic() < deadline, f"run {run_id} timed out"
            time.sleep(1)
    return detail, stack.workdir / "store"
