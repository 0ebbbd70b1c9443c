"""The results' typed models (result_schemas.py): documented with examples down to the conditions table,
the comparisons and the rounds, and permissive: real results and older stored ones read back unchanged."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from seal_lab.store.local import LocalStore
from services.coordinator.engine.manager import RunManager
from services.coordinator.run.result_schemas import ConditionRow, RunResults
from services.coordinator.run.schemas import HeldoutHeadline, RunConfig, RunCreate, RunHeadline
from tests.unit.fake_services import FakeClients
from tests.unit.test_orchestrator import run_to_end, scenario, settings
from tests.unit.test_routes import RESULTS


def _round_trip(results: dict[str, Any]) -> Any:
    return json.loads(RunResults.model_validate(results).model_dump_json())


def test_a_real_run_s_results_with_a_conditions_table_read_back_unchanged(tmp_path):
    config = settings()
    clients = FakeClients(config.trainer_addresses)
    request = RunCreate(dataset="demo", limit=3, config=RunConfig(k=1, retention=False, heldout=2))

    async def body(manager: RunManager, clients: FakeClients, store: LocalStore) -> dict[str, Any]:
        run = await run_to_end(manager, await manager.create(request))
        assert run.status == "succeeded", run.error
        return run.results.model_dump()

    results = scenario(tmp_path, clients, config, body)
    typed = RunResults.model_validate(results)
    assert typed.heldout is not None and typed.heldout.conditions[0].condition == "base"
    assert typed.heldout.comparisons is not None and typed.heldout.comparisons.by_metric
    assert _round_trip(results) == json.loads(json.dumps(results))


def test_an_older_result_missing_fields_and_a_newer_one_with_extra_keys_read_back_as_stored():
    heldout = {
        "metric": "f1",
        "conditions": [{"condition": "base", "n": 2, "mean": 0.2}, {"condition": "p0", "new_column": [1]}],
        "comparisons": {"by_metric": {"f1": [{"a": "p0", "b": "passage", "holm_p": 0.5}]}},
    }
    stored = {**RESULTS, "heldout": heldout}
    assert _round_trip(stored) == json.loads(json.dumps(stored))


def test_a_row_of_the_wrong_type_is_refused():
    with pytest.raises(ValidationError):
        ConditionRow.model_validate({"condition": "p0", "n": "many"})


def test_the_openapi_document_types_the_table_rows_comparisons_and_rounds_with_examples(tmp_path):
    from fastapi.testclient import TestClient

    from services.coordinator.api.app import create_app
    from services.coordinator.settings import CoordinatorSettings

    schemas = (
        TestClient(create_app(CoordinatorSettings(), LocalStore(tmp_path)))
        .get("/openapi.json")
        .json()["components"]["schemas"]
    )
    heldout = schemas["HeldoutResults"]["properties"]
    assert heldout["conditions"]["items"]["$ref"].endswith("/ConditionRow")
    for name in ("ConditionRow", "Comparison", "RoundResult", "Estimate"):
        assert schemas[name]["examples"], name
    assert schemas["RunResults"]["properties"]["rounds"]["items"]["$ref"].endswith("/RoundResult")


def test_a_runs_headline_is_its_best_self_edits_gain_and_its_best_held_out_condition():
    summary = {"metric": "f1", "mean_best_gain": 0.25, "mean_best": 0.5, "mean_baseline": 0.25}
    conditions = [
        {"condition": "base", "mean": 0.1, "gain": {"mean": 0.9}},  # the base row never counts
        {"condition": "passage", "label": "passage only", "gain": {"mean": 0.1}},
        {"condition": "p0", "label": "round 0", "gain": {"mean": 0.2}},
        {"condition": "p1", "label": "round 1", "gain": {"mean": 0.2}},  # a tie: the first listed wins
        {"condition": "teacher:gpt", "gain": {"mean": None}},
    ]
    results = RunResults.model_validate(
        {**RESULTS, "summary": summary, "heldout": {"metric": "f1", "conditions": conditions}}
    )
    assert RunHeadline.of(results) == RunHeadline(
        metric="f1",
        gain=0.25,
        best=0.5,
        baseline=0.25,
        heldout=HeldoutHeadline(label="round 0", gain=0.2),
    )
    plain = RunHeadline.of(RunResults.model_validate(RESULTS))  # no held-out set, no scores yet
    assert plain == RunHeadline(metric="f1") and plain.heldout is None and plain.gain is None


def test_the_openapi_document_describes_the_headline_every_run_summary_carries(tmp_path):
    from fastapi.testclient import TestClient

    from services.coordinator.api.app import create_app
    from services.coordinator.settings import CoordinatorSettings

    schemas = (
        TestClient(create_app(CoordinatorSettings(), LocalStore(tmp_path)))
        .get("/openapi.json")
        .json()["components"]["schemas"]
    )
    for name in ("RunSummary", "RunDetail"):
        headline = schemas[name]["properties"]["headline"]
        assert "without reading each run" in headline["description"], name
        assert {"$ref": "#/components/schemas/RunHeadline"} in headline["anyOf"], name
        assert "headline" not in schemas[name].get("required", []), name
    fields = schemas["RunHeadline"]["properties"]
    assert set(fields) == {"metric", "gain", "best", "baseline", "heldout"}
    assert all(field.get("description") for field in fields.values())
    assert schemas["RunPage"]["properties"]["runs"]["items"]["$ref"].endswith("/RunSummary")


# ---- the nested parts (issue 30, item 3) ------------------------------------------------------------------


def _built() -> RunResults:
    from services.coordinator.results.build import build_results
    from tests.unit import rounds_fixtures as fx

    return build_results(fx.PASSAGES, fx.build_jobs(), fx.config(), fx.SPLIT, fx.TEACHERS)


def test_every_part_of_the_results_is_a_typed_model_from_the_builder_on():
    from services.coordinator.run import result_schemas as rs
    from services.coordinator.run.records import Answer, BestSelfEdit, DirectiveRecord, PolicyRecord, Scores

    results = _built()
    assert isinstance(results.summary, rs.ResultsSummary) and results.summary.heldout_by_round
    round1 = results.rounds[1]
    assert isinstance(round1.summary, rs.RoundSummary)
    assert any(r.summary.seconds.get("policy_train") for r in results.rounds)
    passage = round1.passages[0]
    assert isinstance(passage, rs.PassageResult) and isinstance(passage.questions[0], rs.QuestionResult)
    assert isinstance(passage.baseline, Scores) and isinstance(passage.best, BestSelfEdit)
    assert passage.best.passage_id is None  # the passage carries it; a policy update's winners do
    edit = passage.self_edits[0]
    assert isinstance(edit, rs.SelfEditResult) and isinstance(edit.directive, DirectiveRecord)
    trial = edit.trials[1]
    assert isinstance(trial, rs.Trial) and trial.trial == "-d1" and isinstance(trial.answers[0], Answer)
    update = results.rounds[0].policy_update
    assert isinstance(update, PolicyRecord) and isinstance(update.winners[0], BestSelfEdit)
    assert update.winners[0].passage_id == "p-a"
    heldout = results.heldout
    assert heldout is not None and isinstance(heldout.passages[0], rs.HeldoutPassage)
    assert isinstance(heldout.power, rs.Power) and isinstance(heldout.metrics["p0"]["f1"], rs.MetricEstimate)
    assert isinstance(heldout.conditions[1].control_gain, rs.Estimate)
    assert isinstance(results.what_worked.directive_search[0], rs.SearchTrial)
    assert isinstance(results.gain_vs_retention[0], rs.GainPoint)


def test_results_stored_and_read_back_are_the_same_json_and_the_same_bytes():
    from seal_lab.store import json_bytes

    results = _built().model_dump()
    stored = json_bytes(results)
    read_back = RunResults.model_validate(json.loads(stored)).model_dump()
    assert read_back == results and json_bytes(read_back) == stored


def test_numbers_in_the_nested_parts_keep_their_json_type():
    summary = {"seconds": {"train": 3, "evaluate": 1.5}, "mean_reward": 1, "reward_by_format": {"x": 0}}
    dumped = RunResults.model_validate({**RESULTS, "summary": summary}).model_dump()["summary"]
    # As JSON text: an int stays "3", not "3.0" (the stored bytes would change otherwise).
    assert json.dumps(dumped, sort_keys=True) == json.dumps(summary, sort_keys=True)


def test_the_openapi_document_types_the_passages_self_edits_trials_and_held_out_passages(tmp_path):
    from fastapi.testclient import TestClient

    from services.coordinator.api.app import create_app
    from services.coordinator.settings import CoordinatorSettings

    schemas = (
        TestClient(create_app(CoordinatorSettings(), LocalStore(tmp_path)))
        .get("/openapi.json")
        .json()["components"]["schemas"]
    )

    def ref(model: str, field: str) -> str:
        prop = schemas[model]["properties"][field]
        target = prop.get("items") or next((p for p in prop.get("anyOf", [prop]) if "$ref" in p), prop)
        return target.get("$ref", "").rsplit("/", 1)[-1]

    assert ref("RunResults", "passages") == "PassageResult"
    assert ref("PassageResult", "self_edits") == "SelfEditResult"
    assert ref("SelfEditResult", "trials") == "Trial"
    assert ref("PassageResult", "best") == "BestSelfEdit"
    assert ref("RoundResult", "summary") == "RoundSummary"
    assert ref("HeldoutResults", "passages") == "HeldoutPassage"
    assert ref("RunResults", "what_worked") == "WhatWorked"
    assert ref("RunResults", "gain_vs_retention") == "GainPoint"
    assert ref("RunResults", "reproducibility") == "Reproducibility"
    assert ref("RunResults", "continual") == "ContinualResults"
    assert ref("ContinualResults", "streams") == "ContinualStream"
    assert ref("ContinualStream", "steps") == "ContinualStep"
    assert ref("ContinualResults", "by_position") == "ContinualByPosition"
    assert ref("ContinualResults", "per_stream") == "StreamFinal"
    assert ref("ContinualResults", "summary") == "ContinualSummary"


OLD_RESULTS = sorted((Path(__file__).parents[2] / "tests" / "fixtures" / "results").glob("*.json"))


def test_there_are_results_of_two_earlier_coordinators():
    assert [p.stem for p in OLD_RESULTS] == [
        "78eaaa7-plain",
        "78eaaa7-rounds",
        "d970ee5-plain",
        "d970ee5-rounds",
    ]


@pytest.mark.parametrize("path", OLD_RESULTS, ids=lambda p: p.stem)
def test_results_an_earlier_coordinator_stored_read_typed_and_dump_back_to_the_same_bytes(path):
    from seal_lab.store import json_bytes
    from services.coordinator.run.result_schemas import HeldoutPassage, PassageResult

    typed = RunResults.model_validate_json(path.read_bytes())
    assert isinstance(typed.passages[0], PassageResult) and typed.passages[0].self_edits
    assert typed.heldout is not None and isinstance(typed.heldout.passages[0], HeldoutPassage)
    assert json_bytes(typed.model_dump()) == path.read_bytes()
