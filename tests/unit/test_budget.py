"""Budgets: a run that plans more than a run may is refused at creation (422, the setting and the numbers);
one that would take the coordinator's unfinished runs past its budget must wait (429); the benchmarks fit the
defaults. The token bound follows the directive (steps, epochs or a token budget) and the text a dataset can hold."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from benchmarks.conditions import PRESETS
from seal_lab.errors import InvalidArgument
from seal_lab.formats.directive import Directive, DirectiveLimits
from seal_lab.formats.passages import parse_passages
from seal_lab.store.local import LocalStore
from services.coordinator.engine.budget import (
    BudgetExhausted,
    plan_run,
    training_tokens,
    worst_training_tokens,
)
from services.coordinator.engine.manager import RunManager
from services.coordinator.engine.state import RunState
from services.coordinator.run.schemas import RunConfig, RunCreate
from services.coordinator.settings import CoordinatorSettings
from tests.unit.fake_services import FakeClients
from tests.unit.test_orchestrator import REQUEST, scenario, settings, until
from tests.unit.test_run_cancel import with_api

LIMITS = DirectiveLimits().with_clamped_default()
#: What one request could plan before budgets: every multiplier at its maximum, on the demo passages.
HUGE = {
    "k": 16,
    "formats": ["implications", "rewrite", "self-qa"],
    "reward_seeds": 8,
    "rounds": 10,
    "directive_search": [{"epochs": e} for e in range(1, 9)],
}


def passages(count: int, context_bytes: int) -> list[dict[str, Any]]:
    """SQuAD-like passages, each `context_bytes` long, with one question."""
    return [
        {
            "title": f"Topic {i}",
            "context": (f"Passage {i} says that " + "the bells ring often. " * context_bytes)[:context_bytes],
            "questions": [{"question": "What rings?", "answer": "the bells"}],
        }
        for i in range(count)
    ]


def planned(body: dict[str, Any]) -> tuple[RunState, Any]:
    request = RunCreate(**body)
    train = parse_passages(request.passages, "train")
    held = parse_passages(request.heldout_passages or [], "held")
    teachers = {
        t.name: (t.format, {p.passage_id: t.passages[0]["completions"][0] for p in held})
        for t in request.teachers
    }
    run = RunState(
        "run",
        "",
        request.config,
        train + held,
        0.0,
        heldout_ids=frozenset(p.passage_id for p in held),
        teachers=teachers,
    )
    return run, plan_run(run, LIMITS)


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_the_conditions_benchmark_fits_the_default_budgets(preset):
    """benchmarks/conditions.py on long SQuAD passages (3,000 bytes; most are under 1,000), teachers' completions
    of 4,000 bytes: within every default budget, the GPU preset with room for three such runs at once."""
    sizes = PRESETS[preset]
    teacher = {"context": "x", "completions": ["An implication of the passage. " * 130]}
    body = {
        "passages": passages(sizes["train"], 3000),
        "heldout_passages": passages(sizes["heldout"] + sizes["train"], 3000)[sizes["train"] :],
        "teachers": [{"name": n, "passages": [teacher]} for n in ("gpt4_1", "seal_iter2")][
            : 2 * sizes["teachers"]
        ],
        "config": {
            "k": sizes["k"],
            "rounds": sizes["rounds"],
            "max_new_tokens": 160,
            "retention_heldout": sizes["retention_heldout"],
            "reward_seeds": sizes["reward_seeds"],
        },
    }
    run, plan = planned(body)
    defaults = CoordinatorSettings()
    assert plan.jobs == run.jobs_total == {"cpu": 386, "gpu": 8052}[preset]
    assert plan.jobs <= defaults.max_jobs_per_run and plan.train_tokens <= defaults.max_train_tokens_per_run
    assert (
        3 * plan.jobs <= defaults.max_active_jobs
        and 3 * plan.train_tokens <= defaults.max_active_train_tokens
    )


def test_a_training_is_bounded_by_its_steps_or_its_epochs_and_by_its_data():
    steps = Directive(steps=24, batch_size=2, max_length=100)
    assert training_tokens(steps, data_tokens=1000) == 24 * 200
    assert training_tokens(steps, data_tokens=150) == 24 * 150  # a step never holds more than the dataset
    assert training_tokens(Directive(steps=0, epochs=3), data_tokens=500) == 1500
    # A model-written directive: the worst of the three modes the limits allow (steps, epochs, tokens; the
    # last may pass the token budget by one example).
    assert worst_training_tokens(LIMITS, 500) == max(200 * min(16 * 1024, 500), 10 * 500, 200_000 - 1 + 500)
    assert worst_training_tokens(LIMITS, 5000) == 200 * 5000  # on larger data the step budget is the worst
    # A directive-search trial that sets epochs asks for passes over the data.
    assert worst_training_tokens(LIMITS, 500, {"epochs": 2}) == 2 * 500


def test_a_run_planning_more_jobs_than_a_run_may_is_refused_before_any_work(tmp_path):
    config = settings()
    clients = FakeClients(config.trainer_addresses)

    async def body(manager: RunManager, clients: FakeClients, store: LocalStore, http: httpx.AsyncClient):
        answer = await http.post("/v1/runs", json={"dataset": "demo", "config": HUGE})
        assert answer.status_code == 422
        detail = answer.json()["detail"]
        assert "SEAL_COORDINATOR_MAX_JOBS_PER_RUN is 20,000" in detail and "this run plans" in detail
        assert (
            not manager.runs and not store.list_keys("runs/") and sum(clients.generator.calls.values()) == 0
        )

    with_api(tmp_path, clients, config, body)


def test_a_run_planning_more_training_tokens_than_a_run_may_is_refused(tmp_path):
    config = settings(max_train_tokens_per_run=1_000_000)
    clients = FakeClients(config.trainer_addresses)

    async def body(manager: RunManager, clients: FakeClients, store: LocalStore, http: httpx.AsyncClient):
        # Self-edits trained with the directives the model writes are bounded by the worst the limits allow.
        generated = {"k": 2, "self_edit_directive": "generated"}
        answer = await http.post("/v1/runs", json={"dataset": "demo", "limit": 2, "config": generated})
        assert answer.status_code == 422
        assert "SEAL_COORDINATOR_MAX_TRAIN_TOKENS_PER_RUN is 1,000,000" in answer.json()["detail"]
        assert "4 trainings may process up to" in answer.json()["detail"]
        # With the trainer's default directive (the default) the same run is bounded by it, and fits.
        fits = await http.post("/v1/runs", json={"dataset": "demo", "limit": 2, "config": {"k": 2}})
        assert fits.status_code == 202

    with_api(tmp_path, clients, config, body)


def test_a_run_beyond_the_coordinators_budget_waits_until_a_run_has_finished(tmp_path):
    config = settings(max_active_jobs=15)  # one run of REQUEST (10 jobs) at a time
    clients = FakeClients(config.trainer_addresses)
    trainer = clients.trainer["trainer-a:1"]
    trainer.hold("Train")
    body_json = {"dataset": "demo", "limit": 2, "config": {"k": 2, "retention": False}}

    async def body(manager: RunManager, clients: FakeClients, store: LocalStore, http: httpx.AsyncClient):
        first = await http.post("/v1/runs", json=body_json)
        assert first.status_code == 202 and first.json()["jobs_total"] == 10
        await until(trainer.holding.is_set)
        refused = await http.post("/v1/runs", json=body_json)
        assert refused.status_code == 429 and "retry-after" not in refused.headers
        detail = refused.json()["detail"]
        assert "1 unfinished run(s) plan 10 jobs; with this run's 10" in detail
        assert "SEAL_COORDINATOR_MAX_ACTIVE_JOBS (15)" in detail and "cancel one" in detail
        assert len(manager.runs) == 1
        await http.post(f"/v1/runs/{first.json()['id']}/cancel")  # a cancelled run counts no more
        assert (await http.post("/v1/runs", json=body_json)).status_code == 202

    with_api(tmp_path, clients, config, body)


def test_budget_errors_are_the_documented_classes(tmp_path):
    config = settings(max_jobs_per_run=5)

    async def body(manager: RunManager, clients: FakeClients, store: LocalStore) -> None:
        with pytest.raises(InvalidArgument, match="this run plans 10 jobs"):
            await manager.create(REQUEST)
        assert BudgetExhausted("x").http_status == 429

    scenario(tmp_path, FakeClients(config.trainer_addresses), config, body)


def test_huge_config_planned_two_million_jobs_before():
    """The size of what one request could plan (the issue's figure): far beyond the per-run budget."""
    run = RunState("run", "", RunConfig(**HUGE), parse_passages(passages(500, 500), "x"), 0.0)
    assert run.jobs_total >= 1_900_000 and CoordinatorSettings().max_jobs_per_run * 50 < run.jobs_total
