"""SEAL's judge as the reward: a run asks for it only from an evaluator that has one (it fails at its start,
before any job, otherwise), and then every reward and best self-edit is the judge's. Compose passes the judge's
settings through to the evaluator, and an empty key from compose is no key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from seal.v1 import common_pb2, evaluator_pb2
from seal_lab.store.local import LocalStore
from services.coordinator.engine.manager import RunManager
from services.coordinator.run.schemas import RunConfig, RunCreate
from services.evaluator.settings import EvaluatorSettings
from tests.unit.fake_services import ADAPTED_F1, BASE_F1, FakeClients, FakeEvaluator
from tests.unit.test_orchestrator import run_to_end, scenario, settings

ROOT = Path(__file__).resolve().parents[2]
#: The fake judge says yes more often for adapted answers than F1 rises: a reward read from F1 by mistake differs.
BASE_JUDGE, ADAPTED_JUDGE = 0.25, 0.875
JUDGE_REQUEST = RunCreate(
    dataset="demo", limit=2, config=RunConfig(k=2, retention=False, reward_metric="judge")
)


class JudgingEvaluator(FakeEvaluator):
    """An evaluator with SEAL's judge, as the real one says in GetInfo and gives in its scores."""

    async def GetInfo(self, request: common_pb2.GetInfoRequest, timeout: float) -> common_pb2.ServiceInfo:
        info = await super().GetInfo(request, timeout)
        info.runtime["judge"] = "on"
        return info

    async def Evaluate(self, request: evaluator_pb2.EvaluateRequest, timeout: float) -> Any:
        response = await super().Evaluate(request, timeout)
        for evaluation in response.evaluations:
            evaluation.mean.judge = ADAPTED_JUDGE if evaluation.adapter_key else BASE_JUDGE
        return response


def test_a_judge_reward_without_a_judge_fails_the_run_before_any_job(tmp_path):
    config = settings()

    async def body(manager: RunManager, clients: FakeClients, store: LocalStore) -> None:
        run = await run_to_end(manager, await manager.create(JUDGE_REQUEST))
        assert run.status == "failed" and not run.jobs
        assert "reward_metric 'judge' needs an evaluator with SEAL's judge" in run.error
        assert "SEAL_EVALUATOR_JUDGE_BASE_URL" in run.error
        assert clients.evaluator.calls["Evaluate"] == 0

    scenario(tmp_path, FakeClients(config.trainer_addresses), config, body)


def test_with_a_judge_every_reward_is_the_judges_gain(tmp_path):
    config = settings()
    clients = FakeClients(config.trainer_addresses)
    clients.evaluator = JudgingEvaluator()

    async def body(manager: RunManager, clients: FakeClients, store: LocalStore) -> None:
        run = await run_to_end(manager, await manager.create(JUDGE_REQUEST))
        assert run.status == "succeeded", run.error
        passages = run.results.model_dump()["rounds"][0]["passages"]
        rewards = [e["reward"] for p in passages for e in p["self_edits"]]
        assert rewards and all(r == pytest.approx(ADAPTED_JUDGE - BASE_JUDGE) for r in rewards)
        assert pytest.approx(ADAPTED_F1 - BASE_F1) != ADAPTED_JUDGE - BASE_JUDGE
        assert run.results.summary.mean_best_gain == round(ADAPTED_JUDGE - BASE_JUDGE, 4)

    scenario(tmp_path, clients, config, body)


def test_an_empty_judge_key_from_compose_is_no_key_and_does_not_clash_with_the_key_file(
    tmp_path, monkeypatch
):
    key_file = tmp_path / "judge-key"
    key_file.write_text("sk-from-a-secret-file\n")
    monkeypatch.setenv("SEAL_EVALUATOR_JUDGE_API_KEY", "")
    assert EvaluatorSettings().judge_api_key is None
    monkeypatch.setenv("SEAL_EVALUATOR_JUDGE_API_KEY_FILE", str(key_file))
    assert EvaluatorSettings().judge_api_key.get_secret_value() == "sk-from-a-secret-file"


@pytest.mark.parametrize("compose_file", ["docker-compose.yml", "deploy/docker-compose.laptop.yml"])
def test_compose_passes_the_judge_settings_to_the_evaluator(compose_file):
    services = yaml.safe_load((ROOT / compose_file).read_text())["services"]
    environment = services["evaluator"]["environment"]
    for name in ("BASE_URL", "MODEL", "API_KEY"):
        variable = f"SEAL_EVALUATOR_JUDGE_{name}"
        assert environment[variable] == f"${{{variable}:-}}"
