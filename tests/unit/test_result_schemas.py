"""The results' typed models (result_schemas.py): documented with examples down to the conditions table,
the comparisons and the rounds, and permissive: real results and older stored ones read back unchanged."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import ValidationError

from seal_lab.store.local import LocalStore
from services.coordinator.engine.manager import RunManager
from services.coordinator.run.result_schemas import ConditionRow, RunResults
from services.coordinator.run.schemas import RunConfig, RunCreate
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
