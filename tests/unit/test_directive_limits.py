"""Directive settings a run gives outside the trainer's limits are refused, naming the field, the value and
the limits, not clamped (issue 34, item 4): at creation (422) when a trainer's limits are known or a trainer
answers, else at the run's start (the run fails before any job). A directive the model writes is still
clamped, and its record keeps what was asked beside what is used."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from fastapi.testclient import TestClient

from seal_lab.errors import InvalidArgument
from seal_lab.formats.directive import DIRECTIVE_CEILING, DirectiveLimits, DirectiveSource, parse_directive
from seal_lab.store.local import LocalStore
from services.coordinator.api.app import create_app
from services.coordinator.engine.manager import RunManager
from services.coordinator.engine.servicecheck import directive_problems
from services.coordinator.run.schemas import RunConfig, RunCreate
from services.coordinator.settings import CoordinatorSettings
from services.trainer.settings import TrainerSettings
from tests.unit.fake_services import FakeClients
from tests.unit.test_orchestrator import run_to_end, scenario, settings

#: (config, what the refusal says) against the default limits (epochs 1-10, lr 1e-5 to 1e-2, rank 1-64).
OUT_OF_LIMITS = [
    ({"directive_search": [{"epochs": 1000}]}, "config.directive_search[0].epochs=1000 is outside [1, 10]"),
    (
        {"directive_search": [{"epochs": 2}, {"lora_rank": 8, "batch_size": 99}]},
        "config.directive_search[1].batch_size=99 is outside [1, 16]",
    ),
    (
        {"rounds": 1, "policy_directive": {"lora_rank": 100_000}},
        "config.policy_directive.lora_rank=100000 is outside [1, 64]",
    ),
    (
        {"rounds": 1, "policy_directive": {"learning_rate": 1e9}},
        "config.policy_directive.learning_rate=1e+09 is outside [1e-05, 0.01]",
    ),
    (
        {"heldout_directive": {"tokens": 300_000}},
        "config.heldout_directive.tokens=300000 is outside [0, 200000]",
    ),
]


def request(config: dict[str, Any]) -> RunCreate:
    return RunCreate(dataset="demo", limit=1, config=RunConfig(k=1, retention=False, **config))


@pytest.fixture
def client(tmp_path) -> Iterator[TestClient]:
    """The real app; its services lead nowhere, and a trainer published the default limits before."""
    settings = CoordinatorSettings(
        generator_address="127.0.0.1:1", trainer_addresses=["127.0.0.1:1"], evaluator_address="127.0.0.1:1"
    )
    with TestClient(create_app(settings, LocalStore(tmp_path / "store"))) as test_client:
        test_client.app.state.manager.limits.publish(DirectiveLimits())
        yield test_client
        assert test_client.get("/v1/runs").json()["runs"] == []  # nothing was created


@pytest.mark.parametrize(("config", "message"), OUT_OF_LIMITS)
def test_a_directive_setting_outside_the_trainers_limits_is_a_422(client, config, message):
    response = client.post("/v1/runs", json={"dataset": "demo", "limit": 1, "config": config})
    assert response.status_code == 422, response.text
    assert response.json()["code"] == "invalid_argument"
    assert message in response.json()["message"]
    assert "refused, not clamped" in response.json()["message"]


def test_before_any_run_the_trainer_is_asked_its_limits_at_creation(tmp_path):
    """A trainer that publishes max_epochs 20: 15 is accepted and trained as asked, 21 is refused."""
    clients = FakeClients(["trainer-a:1"])
    clients.trainer["trainer-a:1"].limits = DirectiveLimits(max_epochs=20)

    async def body(manager: RunManager, clients: FakeClients, store: LocalStore) -> None:
        with pytest.raises(InvalidArgument, match=r"directive_search\[0\].epochs=21 is outside \[1, 20\]"):
            await manager.create(request({"directive_search": [{"epochs": 21}]}))
        assert clients.trainer["trainer-a:1"].calls["GetInfo"] >= 1 and not manager.runs
        run = await run_to_end(manager, await manager.create(request({"directive_search": [{"epochs": 15}]})))
        assert run.status == "succeeded", run.error
        trained = [
            r.directive.epochs for r in clients.trainer["trainer-a:1"].requests if hasattr(r, "dataset_key")
        ]
        assert 15 in trained
        trial = run.results.model_dump()["rounds"][0]["passages"][0]["self_edits"][0]["trials"][1]
        assert trial["directive"]["epochs"] == 15  # the results show what trained, and it is what was asked

    scenario(tmp_path, clients, settings(), body)


def test_with_no_trainer_to_ask_at_creation_the_run_fails_at_its_start_naming_the_setting(tmp_path):
    clients = FakeClients(["trainer-a:1"])
    clients.trainer["trainer-a:1"].fail("GetInfo", grpc.StatusCode.UNAVAILABLE)  # away at creation only

    async def body(manager: RunManager, clients: FakeClients, store: LocalStore) -> None:
        run = await run_to_end(
            manager, await manager.create(request({"directive_search": [{"epochs": 1000}]}))
        )
        assert run.status == "failed" and not run.jobs
        assert "trainer at trainer-a:1 does not allow" in run.error
        assert "config.directive_search[0].epochs=1000 is outside [1, 10]" in run.error
        assert clients.trainer["trainer-a:1"].calls["Train"] == 0

    scenario(tmp_path, clients, settings(), body)


def test_only_the_policy_directive_fields_set_off_their_defaults_are_refused_the_defaults_are_clamped():
    tight = DirectiveLimits(max_max_length=128)
    # The default policy directive's max_length (1024) is over 128: clamped when trained, not refused, also
    # when the request names it (a run's recorded config names every field and must be accepted again).
    assert directive_problems(RunConfig(rounds=1), tight) == []
    recorded = RunConfig(rounds=1).model_dump(mode="json")
    assert directive_problems(RunConfig(**recorded), tight) == []
    assert directive_problems(RunConfig(rounds=1, policy_directive={"max_length": 1024}), tight) == []
    assert directive_problems(RunConfig(rounds=1, policy_directive={"max_length": 2048}), tight) == [
        "config.policy_directive.max_length=2048 is outside [32, 128]"
    ]
    # Without rounds the policy directive is never trained: nothing to refuse.
    assert directive_problems(RunConfig(policy_directive={"lora_rank": 100_000}), tight) == []


def test_a_directive_the_model_writes_is_still_clamped_and_its_record_says_what_was_asked():
    parsed = parse_directive("Training: epochs=1000 learning_rate=1e9 lora_rank=8", DirectiveLimits())
    assert parsed.source is DirectiveSource.PARTIAL or parsed.source is DirectiveSource.CLAMPED
    assert (parsed.directive.epochs, parsed.directive.learning_rate) == (10, 1e-2)
    assert "epochs=1000 clamped to 10" in parsed.notes and "learning_rate=1e9 clamped to 0.01" in parsed.notes


def test_no_trainer_may_publish_limits_beyond_what_a_generator_accepts():
    with pytest.raises(ValueError, match="max_epochs"):
        TrainerSettings(max_epochs=1_000_000)
    assert DirectiveLimits().beyond(DIRECTIVE_CEILING) == []
    assert DirectiveLimits(max_epochs=1_000_000).beyond(DIRECTIVE_CEILING) == [
        "max_epochs=1000000 is above 100"
    ]
