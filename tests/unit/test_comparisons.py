"""The conditions table as an experiment: planned paired comparisons, every metric, budget and control."""

from __future__ import annotations

import copy

import pytest

from services.coordinator.results.build import build_results
from services.coordinator.results.comparisons import METRICS, planned_comparisons
from services.coordinator.run.jobs import JobName
from tests.unit import rounds_fixtures as fx


def test_the_planned_comparisons_are_fixed_in_advance():
    keys = ["base", "passage", "p0", "p1", "p2", "teacher-gpt"]
    assert planned_comparisons(keys, 2) == [
        ("p0", "passage"),
        ("p1", "p0"),
        ("p2", "p0"),
        ("teacher-gpt", "passage"),
    ]
    # A condition that is not in the table is not compared.
    assert planned_comparisons(["base", "passage", "p0"], 0) == [("p0", "passage")]


def test_every_planned_comparison_is_paired_by_passage_and_holm_corrected():
    heldout = fx.build_run_results()["heldout"]
    comparisons = heldout["comparisons"]
    assert comparisons["primary_metric"] == "f1"
    f1 = {(t["a"], t["b"]): t for t in comparisons["by_metric"]["f1"]}
    # Held-out F1 per passage (H1, H2): passage 0.3, 0.4; p0 0.2, 0.3; p1 0.4, 0.5; p2 0.5, 0.8.
    assert f1[("p0", "passage")]["mean_diff"] == pytest.approx(-0.1)
    assert f1[("p1", "p0")]["mean_diff"] == pytest.approx(0.2)
    p2 = f1[("p2", "p0")]  # differences 0.3 and 0.5
    assert (p2["n"], p2["mean_diff"]) == (2, pytest.approx(0.4))
    assert p2["sd_diff"] == pytest.approx(0.141421, abs=1e-5)
    # The teacher covers one passage: too few pairs for a test, and said so.
    teacher = f1[("teacher-gpt", "passage")]
    assert teacher["n"] == 1 and teacher["t_p"] is None and "Too few" in teacher["verdict"]
    # Holm: adjusted p-values are never below the raw ones.
    for test in f1.values():
        if test["t_p"] is not None:
            assert test["holm_p"] >= test["t_p"]
    assert set(comparisons["by_metric"]) == set(METRICS)
    # The power of the design at this N, from the widest spread of differences.
    assert heldout["power"]["n"] == 2 and heldout["power"]["sd_of_differences"] == pytest.approx(
        0.141421, abs=1e-5
    )
    assert heldout["power"]["mde"] > 0.4  # two passages can detect nothing smaller than the effects here


def test_steps_per_condition_and_the_specificity_control():
    jobs = copy.deepcopy(fx.build_jobs())
    for index in (2, 3):
        for condition in ("passage", "p0"):
            train = str(JobName.heldout(index, condition, "train"))
            key = jobs[train]["adapter_key"]
            jobs[train]["metrics"].update(steps=24, tokens=1000 if condition == "p0" else 3000)
            # On the other passage's questions the adapter scores 0.05 above the base model there.
            jobs[str(JobName.heldout(index, condition, "control"))] = {
                "evaluations": {"": fx.evaluation(0.1), key: fx.evaluation(0.15)},
            }
    heldout = build_results(fx.PASSAGES, jobs, fx.config(), fx.SPLIT, fx.TEACHERS).model_dump()["heldout"]
    rows = {c["condition"]: c for c in heldout["conditions"]}
    assert rows["passage"]["steps"]["mean"] == 24 and rows["p0"]["steps"]["mean"] == 24
    assert rows["passage"]["tokens"] == 3000 and rows["p0"]["tokens"] == 1000
    assert rows["p0"]["control_gain"]["mean"] == pytest.approx(0.05)
    assert rows["p1"]["control_gain"]["n"] == 0  # no control job recorded
    h1 = heldout["passages"][0]
    assert h1["control_gain"]["passage"]["f1"] == pytest.approx(0.05)
    # Every metric per condition, with its gain over the base model.
    assert heldout["metrics"]["passage"]["f1"]["gain"]["mean"] == pytest.approx(0.15)
    assert heldout["metrics"]["passage"]["gold_logprob"]["n"] == 0  # the fixture's records predate it


def test_retention_on_the_first_heldout_passages_only_counts_and_reports_its_scope():
    from services.coordinator.engine.state import RunState

    def state(**overrides) -> RunState:
        return RunState(
            id="r",
            name="r",
            config=fx.config(**overrides),
            passages=fx.PASSAGES,
            created_at=0.0,
            heldout_ids=fx.HELDOUT_IDS,
            teachers=fx.TEACHERS,
        )

    everywhere, first_only, none = state(), state(retention_heldout=1), state(retention=False)
    held = everywhere.split.heldout
    assert [first_only.heldout_retention(i) for i in held] == [True, False]
    assert not any(none.heldout_retention(i) for i in held)
    # The second held-out passage has passage, p0..p2 and (not covered by the teacher) no teacher row: 4
    # conditions, each losing its retention job.
    assert everywhere.jobs_total - first_only.jobs_total == 4
    assert first_only.jobs_total - none.jobs_total > 0

    jobs = copy.deepcopy(fx.build_jobs())
    for name in [n for n in jobs if JobName.parse(n).index == 3 and JobName.parse(n).step == "retention"]:
        del jobs[name]
    heldout = build_results(
        fx.PASSAGES, jobs, fx.config(retention_heldout=1), fx.SPLIT, fx.TEACHERS
    ).model_dump()
    rows = {c["condition"]: c for c in heldout["heldout"]["conditions"]}
    assert rows["passage"]["retention_n"] == 1 and rows["passage"]["n"] == 2
    from services.coordinator.report.render import ReportRun, render_report

    page = render_report(ReportRun.model_validate({"id": "run-1", "status": "succeeded", "results": heldout}))
    assert "scored on the first 1 held-out passages of each condition" in page
