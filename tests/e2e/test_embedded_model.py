"""The one end-to-end run on the embedded model (the mechanics run on a tiny random model in the other e2e
files): a round on one demo passage, with its policy update, as four processes on loopback, twice on fresh
stores. The model writes real self-edits that are trained and scored, and the same seed gives the same
self-edits, adapters, rewards and policy: the embedded model's path is deterministic end to end.
"""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from seal_lab.data import demo_passages, passages_to_json
from services.coordinator.launcher import LocalStack

pytestmark = pytest.mark.e2e

#: Small enough for CI on two cores (the trainer's limits clamp the default directive's step budget too).
STACK_ENV = {
    "SEAL_TRAINER_MAX_EPOCHS": "2",
    "SEAL_TRAINER_MAX_STEPS": "4",
    "SEAL_TRAINER_MAX_MAX_LENGTH": "160",
    "SEAL_LOG_LEVEL": "INFO",
}
BODY = {
    "name": "embedded",
    "passages": passages_to_json(demo_passages())[:1],
    "config": {
        "k": 2,
        "max_new_tokens": 48,
        "eval_max_new_tokens": 12,
        "seed": 5,
        "rounds": 1,
        "retention": False,
        "specificity_control": False,
        "min_reward": -1,
    },
}


def _run_on_a_fresh_stack(workdir: Path) -> tuple[dict, Path]:
    """The run's detail once finished, and its store."""
    started = time.perf_counter()
    with (
        LocalStack(workdir, extra_env=STACK_ENV) as stack,
        httpx.Client(base_url=stack.coordinator_url, timeout=30) as client,
    ):
        created = client.post("/v1/runs", json=BODY)
        assert created.status_code == 202, created.text
        run_id = created.json()["id"]
        deadline = time.monotonic() + 900
        while (detail := client.get(f"/v1/runs/{run_id}").json())["status"] in ("queued", "running"):
            assert time.monotonic() < deadline, "the run timed out"
            time.sleep(1)
    print(f"\nembedded-model run {run_id} finished in {time.perf_counter() - started:.0f}s")
    return detail, stack.workdir / "store"


def _fingerprint(results: dict) -> dict:
    round_0 = results["rounds"][0]
    return {
        "self_edits": [(e["dataset_key"], e["reward"]) for p in round_0["passages"] for e in p["self_edits"]],
        "policy": round_0["policy_update"]["adapter_key"],
        "passages": [
            (p["baseline_answers"], [e["preview"] for e in p["self_edits"]]) for p in results["passages"]
        ],
    }


def test_a_round_on_the_embedded_model_is_real_and_reproducible(tmp_path: Path):
    first, store = _run_on_a_fresh_stack(tmp_path / "first")
    assert first["status"] == "succeeded", first["error"]
    results = first["results"]
    # Real model text all the way through: answers, self-edits, a best edit, a trained policy in the store.
    for passage in results["passages"]:
        assert passage["baseline_answers"] and passage["best"] is not None
        assert len(passage["self_edits"]) == 2 and all(
            edit["preview"].strip() for edit in passage["self_edits"]
        )
    policy = results["rounds"][0]["policy_update"]["adapter_key"]
    assert (
        policy.startswith("adapters/") and (store / policy / "adapter_model.safetensors").stat().st_size > 0
    )

    second, _ = _run_on_a_fresh_stack(tmp_path / "second")
    assert second["status"] == "succeeded", second["error"]
    assert _fingerprint(second["results"]) == _fingerprint(results)
