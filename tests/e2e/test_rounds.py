"""ReST-EM rounds end to end on a tiny random Llama (tests/tiny_model.py): two rounds from the CLI, a rerun over
HTTP on a fresh store. These are the mechanics of rounds, held-out conditions and the report, which do not
depend on the model's quality; the embedded model's own run is tests/e2e/test_embedded_model.py.

Checks what issue 3 asks of a run: each round's policy adapter is in the store and the generator used it in
the next round (its key is in the run's records), the next round's self-edits differ from round 0's for the
same passage and seed, every held-out condition (teacher import included) has a score with an error bar, the
report is an HTML page with plots, and the same seed on a fresh store gives the same self-edits and scores.
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

from seal_lab.formats.passages import demo_passages, passages_to_json
from services.coordinator.cli.launcher import LocalStack
from tests.e2e.fresh_stack import SHORT_RUN_ENV, run_on_a_fresh_stack
from tests.tiny_model import tiny_stack_env

pytestmark = pytest.mark.e2e

SEED = 5


def _seal_files(tmp_path: Path) -> tuple[Path, Path, Path]:
    """Training passages, held-out passages, and a hand-written teacher in SEAL's self-edit format."""
    passages = passages_to_json(demo_passages())
    train, heldout = passages[:1], passages[1:3]
    teacher = [
        {
            "title": p["title"],
            "context": p["context"],
            "completions": [
                "\n".join(f"{i}. {s.strip()}." for i, s in enumerate(p["context"].split(". "), 1))
            ],
        }
        for p in heldout
    ]
    files = []
    for name, content in (("train", train), ("heldout", heldout), ("teacher", teacher)):
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(content))
        files.append(path)
    return files[0], files[1], files[2]


@pytest.fixture(scope="module")
def stack_env(tmp_path_factory) -> dict[str, str]:
    """One tiny model for both stacks: the rerun must see the very same base model."""
    return {**SHORT_RUN_ENV, **tiny_stack_env(tmp_path_factory.mktemp("tiny"))}


@pytest.fixture(scope="module")
def first_run(tmp_path_factory, stack_env) -> Iterator[tuple[LocalStack, dict, Path, dict]]:
    """Two rounds started and followed by the CLI; yields (stack, run detail, report path, request body)."""
    tmp = tmp_path_factory.mktemp("rounds")
    train, heldout, teacher = _seal_files(tmp)
    report = tmp / "report.html"
    with LocalStack(tmp / "stack", extra_env=stack_env) as stack:
        command = [
            sys.executable, "-m", "services.coordinator.cli", "run",
            "--dataset", str(train), "--heldout-dataset", str(heldout), "--teacher", f"hand={teacher}",
            "--rounds", "2", "--k", "2", "--max-new-tokens", "48", "--eval-max-new-tokens", "12",
            "--seed", str(SEED), "--no-retention", "--no-specificity-control", "--min-reward", "-1",
            "--report", str(report), "--json",
            "--url", stack.coordinator_url,
        ]  # fmt: skip
        started = time.perf_counter()
        result = subprocess.run(command, capture_output=True, text=True, timeout=1500, check=False)
        assert result.returncode == 0, result.stderr[-3000:]
        detail = json.loads(result.stdout)
        print(f"\nrounds run {detail['id']} finished in {time.perf_counter() - started:.0f}s")
        body = {
            "name": "rerun",
            "passages": json.loads(train.read_text()),
            "heldout_passages": json.loads(heldout.read_text()),
            "teachers": [{"name": "hand", "passages": json.loads(teacher.read_text())}],
            "config": detail["config"],
        }
        yield stack, detail, report, body


def test_policies_are_stored_used_and_change_the_self_edits(first_run):
    stack, detail, _, _ = first_run
    assert detail["status"] == "succeeded", detail["error"]
    results = detail["results"]
    store = stack.workdir / "store"
    rounds = results["rounds"]
    assert [r["round"] for r in rounds] == [0, 1]
    policies = [r["policy_update"]["adapter_key"] for r in rounds]
    # Each round's policy is its own adapter in the store (safetensors), kept after the next round.
    assert len(set(policies)) == 2 and all(key.startswith("adapters/") for key in policies)
    for key in policies:
        assert (store / key / "adapter_model.safetensors").stat().st_size > 0
    # Round 1's generator used round 0's policy (the key is in its job record and in each dataset's record).
    assert rounds[0]["policy_adapter_key"] == "" and rounds[1]["policy_adapter_key"] == policies[0]
    run_jobs = store / "runs" / detail["id"] / "jobs"
    generated = json.loads((run_jobs / "0000-r1-generate-implications.json").read_text())
    assert generated["policy_adapter_key"] == policies[0]
    metas: dict[int, list[dict]] = {}
    for round_result in rounds:
        metas[round_result["round"]] = [
            json.loads((store / edit["dataset_key"]).read_text().splitlines()[0])
            for edit in round_result["passages"][0]["self_edits"]
        ]
    assert {m["policy_adapter_key"] for m in metas[0]} == {""}
    assert {m["policy_adapter_key"] for m in metas[1]} == {policies[0]}
    # Same passage, same sampling seed, another policy: other self-edits. (The winner itself may come back
    # unchanged: the policy was just taught to write it.)
    assert [m["sampling"]["seed"] for m in metas[0]] == [m["sampling"]["seed"] for m in metas[1]]
    written = {r: [(m["raw_output"], m["directive_text"]) for m in metas[r]] for r in metas}
    assert written[0] != written[1]
    # The policy was fine-tuned on (self-edit prompt -> winning self-edit).
    sft = (store / rounds[0]["policy_update"]["dataset_key"]).read_text().splitlines()
    examples = [json.loads(line) for line in sft[1:]]
    assert examples and all(e["prompt"] and e["completion"] for e in examples)
    # The run's reproducibility record names every policy with its hash-derived key.
    reproducibility = results["reproducibility"]
    assert [p["adapter_key"] for p in reproducibility["policy_adapters"]] == ["", *policies]
    assert reproducibility["seed"] == SEED and len(reproducibility["split"]["heldout"]) == 2
    assert reproducibility["runtime"]["trainers"][0]["torch"]


def test_every_condition_has_a_score_with_an_error_bar(first_run):
    _, detail, _, _ = first_run
    heldout = detail["results"]["heldout"]
    conditions = {c["condition"]: c for c in heldout["conditions"]}
    assert list(conditions) == ["base", "passage", "p0", "p1", "p2", "teacher-hand"]
    for row in conditions.values():
        assert row["n"] == 2 and row["mean"] is not None and row["stderr"] is not None and row["ci95"]
    assert [r["round"] for r in heldout["by_round"]] == [0, 1, 2]
    # The teacher's self-edits were imported as a dataset and trained like any other.
    assert all("teacher-hand" in p["self_edits"] for p in heldout["passages"])


def test_report_is_a_page_with_plots_and_examples(first_run):
    stack, detail, report, _ = first_run
    page = report.read_text()
    assert page.startswith("<!doctype html>") and page.count("<svg") >= 4
    assert "passage + hand self-edits" in page and "Best rewarded" in page and "Worst rewarded" in page
    served = httpx.get(f"{stack.coordinator_url}/v1/runs/{detail['id']}/report", timeout=30)
    assert served.status_code == 200 and served.headers["content-type"].startswith("text/html")
    results = httpx.get(f"{stack.coordinator_url}/v1/runs/{detail['id']}/results", timeout=30).json()
    assert results["heldout"]["conditions"] == detail["results"]["heldout"]["conditions"]


def test_same_seed_on_a_fresh_store_reproduces_self_edits_and_scores(first_run, stack_env, tmp_path):
    """Round 0, its policy and every held-out condition they lead to, again on a fresh store. CI's time is
    short, so one round instead of two (round 0 does not depend on what comes after it) and the first held-out
    passage alone (a held-out passage's scores depend on it, the training passages and the seed, not on the
    other held-out passages: the specificity control, which would, is off): its scores must be the same."""
    _, detail, _, body = first_run
    first = body["heldout_passages"][0]
    body = {
        **body,
        "heldout_passages": [first],
        "teachers": [
            {**t, "passages": [p for p in t["passages"] if p["title"] == first["title"]]}
            for t in body["teachers"]
        ],
        "config": {**body["config"], "rounds": 1},
    }
    rerun, _ = run_on_a_fresh_stack(tmp_path / "fresh", stack_env, body)
    assert rerun["status"] == "succeeded", rerun["error"]

    def fingerprint(results: dict, conditions: list[str]) -> dict:
        round_0 = results["rounds"][0]
        (passage,) = [p for p in results["heldout"]["passages"] if p["title"] == first["title"]]
        return {
            "self_edits": [
                (e["dataset_key"], e["reward"]) for p in round_0["passages"] for e in p["self_edits"]
            ],
            "policy": round_0["policy_update"]["adapter_key"],
            "heldout": {c: passage["scores"][c] for c in conditions},
            "heldout_training": {
                c: (passage["training"][c]["steps"], passage["training"][c]["tokens"]) for c in conditions[1:]
            },
        }

    conditions = ["base", "passage", "p0", "p1", "teacher-hand"]
    assert [c["condition"] for c in rerun["results"]["heldout"]["conditions"]] == conditions
    assert fingerprint(rerun["results"], conditions) == fingerprint(detail["results"], conditions)
