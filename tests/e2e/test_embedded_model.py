"""The one end-to-end run on the embedded model (the mechanics run on a tiny random model in the other e2e
files): a round on one demo passage, with its policy update, as four processes on loopback, twice on fresh
stores. The model writes real self-edits that are trained and scored, and the same seed gives the same
self-edits, adapters, rewards and policy: the embedded model's path is deterministic end to end.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from seal_lab.formats.passages import demo_passages, passages_to_json
from tests.e2e.fresh_stack import SHORT_RUN_ENV, run_on_a_fresh_stack

pytestmark = pytest.mark.e2e

BODY = {
    "name": "embedded",
    "passages": passages_to_json(demo_passages())[:1],
    "config": {
        "k": 2,
        "max_new_tokens": 32,
        "eval_max_new_tokens": 8,
        "seed": 5,
        "rounds": 1,
        "retention": False,
        "specificity_control": False,
        "min_reward": -1,
    },
}


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
    first, store = run_on_a_fresh_stack(tmp_path / "first", SHORT_RUN_ENV, BODY)
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

    second, _ = run_on_a_fresh_stack(tmp_path / "second", SHORT_RUN_ENV, BODY)
    assert second["status"] == "succeeded", second["error"]
    assert _fingerprint(second["results"]) == _fingerprint(results)
