"""ReST-EM results from job records: per-round rewards, directive search, held-out conditions (pure).

The job records come from `rounds_fixtures`; every expected number below is worked out by hand from them.
Means are rounded to 4 digits by the code under test, hence `close` (half a unit of the last digit).
"""

from __future__ import annotations

from typing import Any

import pytest

from services.coordinator.results.build import build_results
from services.coordinator.results.heldout import condition_names
from services.coordinator.run.schemas import RunConfig
from tests.unit import rounds_fixtures as fx


def close(value: float) -> Any:
    return pytest.approx(value, abs=6e-5)


@pytest.fixture(scope="module")
def results() -> dict[str, Any]:
    return fx.build_run_results()


def _round(results: dict[str, Any], index: int) -> dict[str, Any]:
    round_result = results["rounds"][index]
    assert round_result["round"] == index
    return round_result


def _passage(round_result: dict[str, Any], passage_id: str) -> dict[str, Any]:
    return next(p for p in round_result["passages"] if p["passage_id"] == passage_id)


def _trial_rewards(passage: dict[str, Any]) -> list[list[float]]:
    return [[t["reward"] for t in e["trials"]] for e in passage["self_edits"]]


# ---- rounds -----------------------------------------------------------------------------------------------


def test_rounds_are_the_inner_loops_before_each_policy_update(results):
    # rounds=2: two inner loops (round 0 with the base generator, round 1 with policy 1), two updates.
    assert [r["round"] for r in results["rounds"]] == [0, 1]
    assert [r["policy_adapter_key"] for r in results["rounds"]] == ["", "adapters/policy1"]
    # Only training passages take part in the rounds.
    for round_result in results["rounds"]:
        assert [p["passage_id"] for p in round_result["passages"]] == ["p-a", "p-b"]
    assert results["passages"] == results["rounds"][0]["passages"]


def test_per_round_rewards_are_score_minus_the_passage_baseline(results):
    round0, round1 = _round(results, 0), _round(results, 1)
    # A: baseline 0.2, own scores 0.5 / 0.2, -d1 scores 0.3 / 0.6.
    assert _trial_rewards(_passage(round0, "p-a")) == [[close(0.3), close(0.1)], [close(0.0), close(0.4)]]
    # B: baseline 0.1, own scores 0.35 / 0.05, -d1 scores 0.15 / 0.1.
    assert _trial_rewards(_passage(round0, "p-b")) == [[close(0.25), close(0.05)], [close(-0.05), close(0.0)]]
    assert _trial_rewards(_passage(round1, "p-a")) == [[close(0.5), close(0.2)], [close(0.3), close(0.1)]]
    assert _trial_rewards(_passage(round1, "p-b")) == [[close(0.3), close(0.2)], [close(0.2), close(0.4)]]
    # An edit's own reward is the reward of its first trial (its own directive).
    assert [e["reward"] for e in _passage(round0, "p-a")["self_edits"]] == [close(0.3), close(0.0)]
    assert [e["trial"] for e in _passage(round0, "p-a")["self_edits"][0]["trials"]] == ["", "-d1"]
    # The baseline is the one shared baseline job, in every round.
    assert _passage(round1, "p-a")["baseline"]["f1"] == 0.2


def test_per_round_summaries(results):
    s0 = _round(results, 0)["summary"]
    s1 = _round(results, 1)["summary"]
    assert s0["mean_baseline"] == close(0.15) and s1["mean_baseline"] == close(0.15)
    assert s0["mean_reward"] == close(0.125)  # (0.3 + 0.0 + 0.25 - 0.05) / 4
    assert s1["mean_reward"] == close(0.325)  # (0.5 + 0.3 + 0.3 + 0.2) / 4
    assert s0["mean_adapted"] == close(0.275)  # own scores 0.5, 0.2, 0.35, 0.05
    assert s0["mean_best"] == close(0.475)  # A's -d1 trial 0.6, B's own 0.35
    assert s1["mean_best"] == close(0.6)  # A's own 0.7, B's -d1 trial 0.5
    assert s0["mean_best_gain"] == close(0.325) and s1["mean_best_gain"] == close(0.45)
    assert s0["positive_best"] == 2 and s0["passages_scored"] == 2 and s0["self_edits"] == 4
    assert s0["mean_retention_base"] == close(0.8)
    assert s0["mean_retention_adapted"] == close(0.7)  # own adapters 0.7, 0.6, 0.7, 0.8
    assert s0["mean_forgetting"] == close(0.1)
    assert s1["mean_retention_adapted"] == close(0.6875)  # 0.6, 0.7, 0.75, 0.7
    assert s1["mean_forgetting"] == close(0.1125)
    assert s0["reward_by_format"] == {"implications": close(0.125)}
    assert s0["reward_by_directive_source"] == {"default": close(-0.05), "parsed": close(0.55 / 3)}
    # Every trial counts here, keyed by the trained directive's value (the -d1 trials have epochs 1).
    assert s0["reward_by_directive"]["epochs"] == {
        "1": close(0.1375),
        "2": close(-0.05),
        "3": close(0.25),
        "5": close(0.3),
        "10": close(0.0),
    }


def test_round_seconds_leave_out_reused_trainings(results):
    # Round 0: generate 20 + 30; train A 10 + 2 + 12 (its 3 s -d1 adapter was reused), B 8 + 2 + 9 + 1;
    # evaluate (baseline 1 + evaluate 4 + retention 2) per passage; the policy-r1 training 40.
    assert _round(results, 0)["summary"]["seconds"] == {
        "generate": 50.0,
        "train": 44.0,
        "evaluate": 14.0,
        "policy_train": 40.0,
    }
    # Round 1: the baseline is not re-run; policy-r2 was reused, so it has no training time.
    assert _round(results, 1)["summary"]["seconds"] == {"generate": 50.0, "train": 27.0, "evaluate": 16.0}


@pytest.mark.parametrize("change", [{"skipped": "no self-edit beat min_reward"}, {"error": "trainer down"}])
def test_a_skipped_or_failed_policy_update_has_no_training_time(change):
    jobs = fx.build_jobs()
    jobs["policy-r1"] = {**jobs["policy-r1"], **change}
    results = build_results(fx.PASSAGES, jobs, fx.config(), fx.SPLIT, fx.TEACHERS).model_dump()
    assert "policy_train" not in results["rounds"][0]["summary"]["seconds"]


def test_the_best_self_edit_may_be_a_directive_search_trial(results):
    a0 = _passage(_round(results, 0), "p-a")
    best = a0["best"]
    assert best["directive_trial"] == "-d1"
    assert best["sample_index"] == 1 and best["format"] == "implications"
    assert best["reward"] == close(0.4) and best["positive"] is True
    assert best["adapter_key"] == fx.adapter_key(0, 0, 1, "-d1")
    assert best["dataset_key"] == "datasets/r0-0-1.jsonl"  # the self-edit's data, whatever the directive
    assert best["directive"]["epochs"] == 1 and best["directive"]["learning_rate"] == 1e-3
    assert best["scores"]["f1"] == 0.6
    # Per edit: its own reward stays, the best trial is recorded next to it.
    edit = a0["self_edits"][1]
    assert edit["reward"] == close(0.0) and edit["best_trial"] == "-d1" and edit["best_reward"] == close(0.4)
    assert edit["adapter_key"] == fx.adapter_key(0, 0, 1, "")
    assert a0["self_edits"][0]["best_trial"] == ""

    b0 = _passage(_round(results, 0), "p-b")["best"]
    assert b0["directive_trial"] == "" and b0["sample_index"] == 0 and b0["reward"] == close(0.25)
    assert b0["directive"]["epochs"] == 3

    b1 = _passage(_round(results, 1), "p-b")["best"]
    assert b1["directive_trial"] == "-d1" and b1["sample_index"] == 1 and b1["reward"] == close(0.4)


def test_forgetting_per_trial(results):
    trials = _passage(_round(results, 0), "p-a")["self_edits"][1]["trials"]
    assert [t["retention"] for t in trials] == [0.6, 0.75]
    assert [t["forgetting"] for t in trials] == [close(0.2), close(0.05)]
    assert [t["train_reused"] for t in trials] == [False, True]


def test_the_policy_update_is_recorded_per_round(results):
    update = _round(results, 0)["policy_update"]
    assert update["adapter_key"] == "adapters/policy1" and update["examples"] == 4
    # The directive it trained with (the config's, defaulted fields clamped to the trainer's limits).
    assert update["directive"] == {"epochs": 2}
    assert _round(results, 1)["policy_update"]["adapter_key"] == "adapters/policy2"


@pytest.mark.parametrize("reason", ["no self-edit beat min_reward", "the winners carry no policy examples"])
def test_a_skipped_policy_update_has_a_progress_digest(reason):
    from services.coordinator.engine.experiment import job_digest
    from services.coordinator.run.records import PolicyRecord

    record = {
        "round": 0,
        "previous_policy_adapter_key": "",
        "winners": [],
        "adapter_key": "",
        "skipped": reason,
    }
    assert job_digest(PolicyRecord.model_validate(record))["adapter_key"] == ""


def test_round_zero_errors_do_not_include_later_rounds():
    jobs = fx.build_jobs()
    jobs["0000-r1-train-implications-1-d1"] = {"error": "trainer refused"}
    results = build_results(fx.PASSAGES, jobs, fx.config(), fx.SPLIT, fx.TEACHERS).model_dump()
    assert results["rounds"][1]["passages"][0]["errors"] == ["r1-train-implications-1-d1: trainer refused"]
    assert results["rounds"][0]["passages"][0]["errors"] == []


# ---- held-out conditions ----------------------------------------------------------------------------------


def test_condition_rows_in_order(results):
    rows = [(c["condition"], c["label"]) for c in results["heldout"]["conditions"]]
    assert rows == [
        ("base", "no adapter"),
        ("passage", "passage only"),
        ("p0", "passage + self-edits (round-0 generator)"),
        ("p1", "passage + self-edits (policy after round 1)"),
        ("p2", "passage + self-edits (policy after round 2)"),
        ("teacher-gpt", "passage + gpt self-edits"),
    ]
    assert [row[:2] for row in condition_names(RunConfig(), [])] == rows[:3]
    shorts = [c["short_label"] for c in results["heldout"]["conditions"]]
    assert shorts[2:] == ["passage + round 0", "passage + round 1", "passage + round 2", "passage + gpt"]


def test_condition_means_stderr_and_gain(results):
    conditions = {c["condition"]: c for c in results["heldout"]["conditions"]}
    # (n, mean, stderr, gain mean, gain stderr, retention); stderr = stdev / sqrt(n), which for two values is
    # half their difference.
    expected = {
        "base": (2, 0.2, 0.1, 0.0, 0.0, 0.8),  # 0.1, 0.3
        "passage": (2, 0.35, 0.05, 0.15, 0.05, 0.75),  # 0.3, 0.4
        "p0": (2, 0.25, 0.05, 0.05, 0.05, 0.75),  # 0.2, 0.3
        "p1": (2, 0.45, 0.05, 0.25, 0.05, 0.675),  # 0.4, 0.5
        "p2": (2, 0.65, 0.15, 0.45, 0.05, 0.6),  # 0.5, 0.8
    }
    for name, (n, mean, stderr, gain, gain_stderr, retention) in expected.items():
        row = conditions[name]
        assert (row["n"], row["mean"], row["stderr"]) == (n, close(mean), close(stderr)), name
        assert (row["gain"]["n"], row["gain"]["mean"]) == (n, close(gain)), name
        assert row["gain"]["stderr"] == close(gain_stderr), name
        assert row["retention"] == close(retention), name
    # Two values: the bootstrap interval runs from one to the other.
    assert conditions["base"]["ci95"] == [close(0.1), close(0.3)]
    # The teacher only has a self-edit for the first held-out passage: one value, no error bar.
    teacher = conditions["teacher-gpt"]
    assert (teacher["n"], teacher["mean"], teacher["stderr"], teacher["ci95"]) == (1, close(0.6), None, None)
    assert teacher["gain"]["mean"] == close(0.5) and teacher["retention"] == close(0.7)


def test_heldout_by_round_and_in_the_summary(results):
    by_round = results["heldout"]["by_round"]
    assert [(r["round"], r["condition"], r["n"]) for r in by_round] == [
        (0, "p0", 2),
        (1, "p1", 2),
        (2, "p2", 2),
    ]
    assert [r["mean"] for r in by_round] == [close(0.25), close(0.45), close(0.65)]
    assert [r["stderr"] for r in by_round] == [close(0.05), close(0.05), close(0.15)]
    assert results["summary"]["heldout_by_round"] == [
        {"round": 0, "mean": close(0.25), "stderr": close(0.05), "n": 2},
        {"round": 1, "mean": close(0.45), "stderr": close(0.05), "n": 2},
        {"round": 2, "mean": close(0.65), "stderr": close(0.15), "n": 2},
    ]


def test_heldout_per_passage(results):
    h1, h2 = results["heldout"]["passages"]
    assert (h1["passage_id"], h2["passage_id"]) == ("p-h1", "p-h2")
    assert h1["scores"] == {
        "base": 0.1,
        "passage": 0.3,
        "p0": 0.2,
        "p1": 0.4,
        "p2": 0.5,
        "teacher-gpt": 0.6,
    }
    assert "teacher-gpt" not in h2["scores"] and "teacher-gpt" not in h2["self_edits"]
    assert h1["retention"]["base"] == 0.8 and h1["retention"]["p2"] == 0.6
    edit = h1["self_edits"]["teacher-gpt"]
    assert edit["adapter_key"] == "adapters/heldout-2-teacher-gpt"
    assert edit["dataset_key"] == "datasets/heldout-2-teacher-gpt.jsonl"
    assert edit["directive"]["max_length"] == 256  # the directive it was trained with
    assert edit["num_texts"] == 3


def test_summary_of_the_whole_run(results):
    summary = results["summary"]
    assert summary["rounds"] == 2
    assert summary["training_passages"] == 2 and summary["heldout_passages"] == 2
    assert summary["mean_reward"] == close(0.125)  # the round-0 summary


def test_a_run_without_heldout_passages_has_one_round_and_no_conditions():
    config = RunConfig(k=2, directive_search=[{"epochs": 1}])
    results = build_results(fx.TRAIN_PASSAGES, fx.build_jobs(heldout=False), config).model_dump()
    assert results["heldout"] is None
    assert len(results["rounds"]) == 1 and results["rounds"][0]["policy_update"] is None
    summary = results["summary"]
    assert summary["rounds"] == 0 and summary["heldout_passages"] == 0 and summary["training_passages"] == 2
    assert "heldout_by_round" not in summary and "policy_train" not in summary["seconds"]
    assert all(not p["group"].startswith("held-out") for p in results["gain_vs_retention"])
    # The same round-0 results as the run with rounds.
    assert results["passages"][0]["best"]["directive_trial"] == "-d1"


# ---- what worked ------------------------------------------------------------------------------------------


def test_reward_by_format_across_rounds(results):
    by_format = results["what_worked"]["reward_by_format"]
    assert list(by_format) == ["implications"]
    # Own rewards of both rounds: 0.3, 0.0, 0.25, -0.05, 0.5, 0.3, 0.3, 0.2 (sum of squares 0.22 about the mean).
    assert by_format["implications"]["n"] == 8
    assert by_format["implications"]["mean"] == close(0.225)
    assert by_format["implications"]["stderr"] == close((0.22 / 7) ** 0.5 / 8**0.5)


def test_reward_by_directive_bucket(results):
    buckets = results["what_worked"]["reward_by_directive_bucket"]
    assert list(buckets) == ["epochs", "learning_rate", "lora_rank"]
    epochs = buckets["epochs"]
    # 1-2: every -d1 trial (epochs 1) plus two own directives with epochs 2.
    assert list(epochs) == ["1-2", "3-5", "6+"]
    assert {k: (v["n"], v["mean"]) for k, v in epochs.items()} == {
        "1-2": (10, close(0.17)),
        "3-5": (3, close(0.35)),  # 0.3, 0.25, 0.5
        "6+": (3, close(0.5 / 3)),  # 0.0, 0.3, 0.2
    }
    assert epochs["3-5"]["stderr"] == close((0.0175**0.5) / 3**0.5)
    # Bucket edges are exclusive upper bounds: 1e-3 and 3e-3 fall into the bucket that starts there.
    assert {k: (v["n"], v["mean"]) for k, v in buckets["learning_rate"].items()} == {
        "<1e-3": (2, close(0.25)),
        "1e-3 to <3e-3": (4, close(0.275)),
        "3e-3 to <1e-2": (8, close(0.2125)),
        ">=1e-2": (2, close(-0.025)),
    }
    assert {k: (v["n"], v["mean"]) for k, v in buckets["lora_rank"].items()} == {
        "1-8": (6, close(0.85 / 6)),
        "9-16": (8, close(0.2625)),
        "17+": (2, close(0.15)),
    }


def test_directive_search_is_compared_with_the_own_directive(results):
    (search,) = results["what_worked"]["directive_search"]
    assert search["trial"] == "-d1" and search["override"] == {"epochs": 1}
    assert search["n"] == 8
    # -d1 rewards 0.1, 0.4, 0.05, 0.0, 0.2, 0.1, 0.2, 0.4 against own 0.3, 0.0, 0.25, -0.05, 0.5, 0.3, 0.3, 0.2.
    assert search["mean_reward"] == close(1.45 / 8)
    assert search["own_mean_reward"] == close(0.225)
    assert search["better_than_own"] == 3 and search["worse_than_own"] == 5


def test_directive_search_skips_trials_without_an_own_reward():
    jobs = fx.build_jobs()
    jobs["0000-train-implications-0"] = {"error": "trainer refused"}
    results = build_results(fx.PASSAGES, jobs, fx.config(), fx.SPLIT, fx.TEACHERS).model_dump()
    (search,) = results["what_worked"]["directive_search"]
    assert search["n"] == 7 and search["worse_than_own"] == 4
    edit = results["rounds"][0]["passages"][0]["self_edits"][0]
    assert edit["reward"] is None and edit["best_trial"] == "-d1" and edit["best_reward"] == close(0.1)


def test_gain_vs_retention_points(results):
    points = results["gain_vs_retention"]
    groups: dict[str, int] = {}
    for point in points:
        groups[point["group"]] = groups.get(point["group"], 0) + 1
    assert groups == {
        "round 0": 8,
        "round 1": 8,
        "held-out: passage only": 2,
        "held-out: round 0": 2,
        "held-out: round 1": 2,
        "held-out: round 2": 2,
        "held-out: gpt": 1,
    }
    round0 = [(p["gain"], p["retention"]) for p in points if p["group"] == "round 0"]
    assert round0[:4] == [
        (close(0.3), 0.7),
        (close(0.1), 0.8),
        (close(0.0), 0.6),
        (close(0.4), 0.75),
    ]
    teacher = next(p for p in points if p["group"] == "held-out: gpt")
    assert (teacher["gain"], teacher["retention"]) == (close(0.5), 0.7)
    p2 = [(p["gain"], p["retention"]) for p in points if p["group"] == "held-out: round 2"]
    assert p2 == [(close(0.4), 0.6), (close(0.5), 0.6)]


def test_a_failed_heldout_job_is_reported_and_leaves_its_condition_short():
    jobs = fx.build_jobs()
    heldout_index = fx.PASSAGES.index(fx.HELDOUT_PASSAGES[0])
    prefix = f"{heldout_index:04d}-heldout-p1-"
    for name in [k for k in jobs if k.startswith(prefix)]:
        del jobs[name]
    jobs[prefix + "train"] = {"error": "trainer refused: INVALID_ARGUMENT"}
    results = build_results(fx.PASSAGES, jobs, fx.config(), fx.SPLIT, fx.TEACHERS).model_dump()
    passage = results["heldout"]["passages"][0]
    assert passage["errors"] == ["heldout-p1-train: trainer refused: INVALID_ARGUMENT"]
    assert "p1" not in passage["scores"]
    row = next(c for c in results["heldout"]["conditions"] if c["condition"] == "p1")
    assert row["n"] == 1 and row["stderr"] is None


def test_a_retention_aware_reward_subtracts_lambda_times_what_was_forgotten():
    weighed = build_results(
        fx.PASSAGES, fx.build_jobs(), fx.config(retention_lambda=2.0), fx.SPLIT, fx.TEACHERS
    ).model_dump()
    trials = _passage(_round(weighed, 0), "p-a")["self_edits"][1]["trials"]
    # gains 0.0 / 0.4 (test_per_round_rewards...), forgetting 0.2 / 0.05 (test_forgetting_per_trial)
    assert [t["reward"] for t in trials] == [close(0.0 - 2 * 0.2), close(0.4 - 2 * 0.05)]
    assert [t["forgetting"] for t in trials] == [close(0.2), close(0.05)]
