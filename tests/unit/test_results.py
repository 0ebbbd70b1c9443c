"""Results from job records: rewards, the best self-edit, and the what-worked breakdowns (pure)."""

from __future__ import annotations

import pytest

from seal_lab.formats.passages import parse_passages
from services.coordinator.results.build import build_results
from services.coordinator.run.schemas import RunConfig

PASSAGES = parse_passages(
    [
        {
            "title": "T",
            "context": "The lamp is red.",
            "questions": [{"question": "What colour?", "answer": "red"}],
        }
    ],
    "test",
)


def _scores(f1: float) -> dict:
    return {"exact_match": 0.0, "f1": f1, "contains": 0.0}


def _edit(index: int, epochs: int, source: str = "parsed") -> dict:
    return {
        "dataset_key": f"datasets/{index}",
        "format": "implications",
        "sample_index": index,
        "directive": {
            "epochs": epochs,
            "learning_rate": 0.003,
            "lora_rank": 16,
            "lora_alpha": 32,
            "batch_size": 1,
        },
        "directive_source": source,
        "directive_notes": [],
        "num_texts": 2,
        "preview": "text",
        "generated_tokens": 10,
    }


def _jobs(train_error: bool = False) -> dict:
    jobs = {
        "0000-baseline": {"seconds": 1.0, "evaluations": {"": {"mean": _scores(0.1), "answers": []}}},
        "0000-generate-implications": {"seconds": 2.0, "self_edits": [_edit(0, 5), _edit(1, 10, "default")]},
        "0000-train-implications-0": {
            "adapter_key": "adapters/a",
            "reused": False,
            "metrics": {"seconds": 3.0},
        },
        "0000-evaluate": {
            "seconds": 4.0,
            "evaluations": {
                "adapters/a": {"mean": _scores(0.4), "answers": []},
                "adapters/b": {"mean": _scores(0.05), "answers": []},
            },
        },
    }
    jobs["0000-retention"] = {
        "seconds": 2.0,
        "evaluations": {
            "": {"mean": _scores(0.9), "answers": []},
            "adapters/a": {"mean": _scores(0.6), "answers": []},
            "adapters/b": {"mean": _scores(0.9), "answers": []},
        },
    }
    if train_error:
        jobs["0000-train-implications-1"] = {"error": "trainer refused: INVALID_ARGUMENT"}
    else:
        jobs["0000-train-implications-1"] = {
            "adapter_key": "adapters/b",
            "reused": True,
            "metrics": {"seconds": 9.0},
        }
    return jobs


def test_reward_is_score_minus_baseline_and_the_best_is_kept():
    results = build_results(PASSAGES, _jobs(), RunConfig(k=2, self_edit_directive="generated")).model_dump()
    passage = results["passages"][0]
    assert [e["reward"] for e in passage["self_edits"]] == [pytest.approx(0.3), pytest.approx(-0.05)]
    assert passage["best"]["adapter_key"] == "adapters/a" and passage["best"]["positive"]
    summary = results["summary"]
    assert summary["mean_baseline"] == 0.1 and summary["mean_best"] == 0.4 and summary["positive_best"] == 1
    assert summary["reward_by_directive"]["epochs"] == {"5": 0.3, "10": -0.05}
    assert summary["reward_by_directive_source"] == {"default": -0.05, "parsed": 0.3}
    # A reused adapter cost no training time in this run.
    assert summary["seconds"] == {"generate": 2.0, "train": 3.0, "evaluate": 7.0}


def test_a_run_on_the_default_directive_credits_the_default_not_what_the_model_wrote():
    results = build_results(PASSAGES, _jobs(), RunConfig(k=2)).model_dump()
    edits = results["passages"][0]["self_edits"]
    assert [e["trained_with"] for e in edits] == ["default", "default"]
    assert [e["directive_source"] for e in edits] == ["parsed", "default"]  # what the model wrote, kept
    assert results["summary"]["reward_by_directive_source"] == {"default": pytest.approx(0.125)}


def test_the_table_shows_the_directive_each_adapter_trained_with():
    from rich.console import Console

    from services.coordinator.cli.display import render_results

    jobs = _jobs()
    default = {
        "epochs": 0,
        "learning_rate": 0.002,
        "lora_rank": 16,
        "lora_alpha": 32,
        "batch_size": 1,
        "steps": 24,
    }
    jobs["0000-train-implications-0"]["directive"] = default  # what the trainer's record keeps
    console = Console(record=True, width=300)
    render_results(console, build_results(PASSAGES, jobs, RunConfig(k=2)))
    text = console.export_text()
    row = next(line for line in text.splitlines() if "implications#0" in line)
    assert "lr=2e-03" in row and "trainer's default" in row and "parsed" not in row
    # The example names what the model wrote beside what trained.
    assert "the model wrote ep=5 lr=3e-03" in text


def test_forgetting_is_the_drop_on_the_retention_set():
    results = build_results(PASSAGES, _jobs(), RunConfig(k=2)).model_dump()
    edits = results["passages"][0]["self_edits"]
    assert [e["retention"] for e in edits] == [0.6, 0.9]
    assert [e["forgetting"] for e in edits] == [pytest.approx(0.3), 0.0]
    summary = results["summary"]
    assert summary["mean_retention_base"] == 0.9 and summary["mean_forgetting"] == pytest.approx(0.15)


def test_a_failed_training_job_is_reported_and_the_rest_still_scored():
    results = build_results(PASSAGES, _jobs(train_error=True), RunConfig(k=2)).model_dump()
    passage = results["passages"][0]
    failed = passage["self_edits"][1]
    assert failed["reward"] is None and "INVALID_ARGUMENT" in failed["train_error"]
    assert passage["best"]["sample_index"] == 0
    assert any("train-implications-1" in e for e in passage["errors"])


def test_the_reward_metric_is_a_run_setting():
    jobs = _jobs()
    jobs["0000-evaluate"]["evaluations"]["adapters/a"]["mean"] = {
        "exact_match": 1.0,
        "f1": 0.0,
        "contains": 1.0,
    }
    results = build_results(PASSAGES, jobs, RunConfig(k=2, reward_metric="exact_match")).model_dump()
    assert results["passages"][0]["self_edits"][0]["reward"] == 1.0


def test_a_reward_averages_its_seeds_and_the_variance_is_split():
    jobs = _jobs()
    # A second seed of each self-edit: self-edit 0 scores 0.4 and 0.2 (rewards 0.3, 0.1), self-edit 1 scores
    # 0.05 and 0.15 (rewards -0.05, 0.05).
    jobs["0000-train-implications-0-s1"] = {"adapter_key": "adapters/a2", "metrics": {"seconds": 3.0}}
    jobs["0000-train-implications-1-s1"] = {"adapter_key": "adapters/b2", "metrics": {"seconds": 3.0}}
    jobs["0000-evaluate"]["evaluations"]["adapters/a2"] = {"mean": _scores(0.2), "answers": []}
    jobs["0000-evaluate"]["evaluations"]["adapters/b2"] = {"mean": _scores(0.15), "answers": []}
    results = build_results(PASSAGES, jobs, RunConfig(k=2, reward_seeds=2)).model_dump()
    edits = results["passages"][0]["self_edits"]
    assert [e["trials"][0]["seed_rewards"] for e in edits] == [
        [pytest.approx(0.3), pytest.approx(0.1)],
        [pytest.approx(-0.05), pytest.approx(0.05)],
    ]
    assert [e["reward"] for e in edits] == [pytest.approx(0.2), pytest.approx(0.0)]
    # One-way ANOVA by hand: group means 0.2 and 0.0, grand mean 0.1; MS within = (0.02 + 0.005) / 2 = 0.0125,
    # MS between = 2 * (0.01 + 0.01) / 1 = 0.04; between component = (0.04 - 0.0125) / 2 = 0.01375.
    variance = results["summary"]["reward_variance"]
    assert variance["n_groups"] == 2
    assert variance["within"] == pytest.approx(0.0125) and variance["between"] == pytest.approx(0.01375)
    assert variance["icc"] == pytest.approx(0.01375 / (0.01375 + 0.0125), abs=1e-4)
    # One seed: no split to report.
    assert build_results(PASSAGES, _jobs(), RunConfig(k=2)).model_dump()["summary"]["reward_variance"] is None
