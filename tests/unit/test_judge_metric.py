"""The coordinator and SEAL's judge: a `judge` column per condition when the evaluator gives verdicts, and
none at all (not zeros) when it has no judge."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from seal.v1 import evaluator_pb2
from services.coordinator.engine.convert import evaluation_record
from services.coordinator.report.render import ReportRun, render_report
from services.coordinator.results.build import build_results
from services.coordinator.results.comparisons import METRICS
from tests.unit import rounds_fixtures as fx


def _judged_jobs() -> dict[str, dict[str, Any]]:
    """The fixture run as if the evaluator had a judge: every evaluation's judge score is 1 - its F1."""
    jobs = copy.deepcopy(fx.build_jobs())
    for record in jobs.values():
        for evaluation in record.get("evaluations", {}).values():
            evaluation["mean"]["judge"] = round(1 - evaluation["mean"]["f1"], 5)
    return jobs


def _report(results: dict[str, Any]) -> str:
    return render_report(
        ReportRun.model_validate(
            {
                "id": "run-1",
                "name": "judge",
                "status": "succeeded",
                "config": fx.config().model_dump(),
                "services": {},
                "results": results,
            }
        )
    )


def test_without_a_judge_there_is_no_judge_column_anywhere():
    results = fx.build_run_results()
    heldout = results["heldout"]
    assert all(set(row) == set(METRICS) for row in heldout["metrics"].values())
    assert set(heldout["comparisons"]["by_metric"]) == set(METRICS)
    assert all("judge" not in scores for p in heldout["passages"] for scores in p["metrics"].values())
    assert "<th>judge</th>" not in _report(results)


def test_with_a_judge_every_condition_reports_it_beside_the_other_metrics():
    results = build_results(fx.PASSAGES, _judged_jobs(), fx.config(), fx.SPLIT, fx.TEACHERS).model_dump()
    heldout = results["heldout"]
    metrics = heldout["metrics"]
    assert all(set(row) == {*METRICS, "judge"} for row in metrics.values())
    # Held-out F1 of passage only: 0.3 and 0.4, so judge 0.7 and 0.6; the base model's F1 is its baseline.
    passage_f1 = metrics["passage"]["f1"]["mean"]
    assert metrics["passage"]["judge"]["mean"] == pytest.approx(1 - passage_f1)
    assert metrics["passage"]["judge"]["gain"]["mean"] == pytest.approx(
        -metrics["passage"]["f1"]["gain"]["mean"]
    )
    judge_tests = {(t["a"], t["b"]): t for t in heldout["comparisons"]["by_metric"]["judge"]}
    assert judge_tests[("p0", "passage")]["mean_diff"] == pytest.approx(0.1)  # F1 differs by -0.1
    # The primary metric and everything the other metrics report are as before.
    plain = fx.build_run_results()["heldout"]
    assert heldout["conditions"] == plain["conditions"]
    assert {m: heldout["comparisons"]["by_metric"][m] for m in METRICS} == plain["comparisons"]["by_metric"]
    assert "<th>judge</th>" in _report(results)


def test_the_judge_score_is_read_from_the_evaluator_only_when_it_sent_one():
    unjudged = evaluator_pb2.Scores(exact_match=1.0, f1=1.0, contains=1.0, token_recall=1.0)
    judged_no = evaluator_pb2.Scores(f1=1.0, judge=0.0)  # judged wrong: 0, and present
    response = evaluator_pb2.EvaluateResponse(
        evaluations=[
            evaluator_pb2.AdapterEvaluation(
                adapter_key="",
                mean=unjudged,
                answers=[evaluator_pb2.Answer(question_id="q0", answer="a", scores=unjudged)],
            ),
            evaluator_pb2.AdapterEvaluation(
                adapter_key="adapters/x",
                mean=judged_no,
                answers=[evaluator_pb2.Answer(question_id="q0", answer="a", scores=judged_no)],
            ),
        ]
    )
    record = evaluation_record(response).model_dump()["evaluations"]
    assert "judge" not in record[""]["mean"] and "judge" not in record[""]["answers"][0]["scores"]
    assert record["adapters/x"]["mean"]["judge"] == 0.0
    assert record["adapters/x"]["answers"][0]["scores"]["judge"] == 0.0
