"""One base model for all: the coordinator refuses mixed services; training is deterministic per seed."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from seal.v1 import evaluator_pb2_grpc
from seal_lab.formats.adapters import ADAPTER_WEIGHTS
from seal_lab.formats.datasets import TrainingExample
from seal_lab.formats.directive import Directive
from seal_lab.model.base import load_model
from seal_lab.model.lora import train_adapter
from seal_lab.serve.host import ModelHost
from seal_lab.settings import ModelSettings
from seal_lab.store.local import LocalStore
from services.coordinator.api.app import create_app
from services.coordinator.settings import CoordinatorSettings
from services.evaluator.server import EvaluatorServicer
from services.evaluator.settings import EvaluatorSettings
from tests.grpc_harness import ServerThread, serve
from tests.tiny_model import tiny_llama

PASSAGE = {
    "title": "The Vellum Bell",
    "context": "The Vellum Bell was cast in 1712 by Pell Arrowby.",
    "questions": [{"question": "Who cast the Vellum Bell?", "answer": "Pell Arrowby"}],
}


@pytest.fixture(scope="module")
def tiny_model_path(tmp_path_factory) -> str:
    return tiny_llama(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="module")
def foreign_evaluator(tiny_model_path, shared_store) -> Iterator[ServerThread]:
    settings = ModelSettings(name=tiny_model_path, device="cpu", dtype="float32")
    servicer = EvaluatorServicer(shared_store, ModelHost("evaluator", settings), EvaluatorSettings())
    server = serve(servicer, "seal.v1.Evaluator", evaluator_pb2_grpc.add_EvaluatorServicer_to_server)
    yield server
    server.stop()


def test_coordinator_refuses_services_with_different_base_models(
    generator_server, trainer_server, foreign_evaluator, tmp_path: Path, tiny_model_path: str
):
    settings = CoordinatorSettings(
        generator_address=generator_server.address,
        trainer_addresses=[trainer_server.address],
        evaluator_address=foreign_evaluator.address,
    )
    with TestClient(create_app(settings, LocalStore(tmp_path / "store"))) as client:
        run_id = client.post("/v1/runs", json={"passages": [PASSAGE], "config": {"k": 1}}).json()["id"]
        deadline = time.monotonic() + 60
        while (detail := client.get(f"/v1/runs/{run_id}").json())["status"] not in ("failed", "succeeded"):
            assert time.monotonic() < deadline
            time.sleep(0.2)
    assert detail["status"] == "failed"
    assert "all services must share one base model" in detail["error"]
    assert tiny_model_path in detail["error"]
    assert detail["jobs_done"] == 0  # nothing was trained or generated against the wrong model


def test_training_is_deterministic_for_a_seed(tiny_model_path, tmp_path: Path):
    loaded = load_model(ModelSettings(name=tiny_model_path, device="cpu", dtype="float32"))
    examples = [
        TrainingExample("", "The Vellum Bell was cast in 1712 by Pell Arrowby."),
        TrainingExample("Q:", " A."),
    ]
    directive = Directive(
        epochs=2, learning_rate=1e-3, lora_rank=4, lora_alpha=8, batch_size=1, max_length=32, steps=0
    )

    def weights(seed: int, name: str) -> bytes:
        outcome = train_adapter(
            loaded, examples, directive, seed, tmp_path / name, target_modules="all-linear"
        )
        assert len(outcome.step_loss) == 4 and outcome.tokens > 0
        return (tmp_path / name / ADAPTER_WEIGHTS).read_bytes()

    assert weights(7, "a") == weights(7, "b")
    assert weights(7, "a") != weights(8, "c")
    # Each job removes its LoRA layers again: the base model is left as it was.
    assert not any("lora" in name for name, _ in loaded.model.named_parameters())
