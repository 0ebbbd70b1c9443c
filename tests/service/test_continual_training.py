"""Training that starts from an existing adapter (a continual stream's current model): carried on at its own
rank, or merged (frozen) under a fresh adapter, the result one plain LoRA. Real model code, tiny random Llama."""

from __future__ import annotations

import pytest
import torch

from seal_lab.formats.datasets import TrainingExample
from seal_lab.formats.directive import Directive
from seal_lab.model.base import load_model
from seal_lab.model.grouptrain import GroupJob, TrainOutcome, start_adapter, train_group
from seal_lab.model.multilora import StackedLora, lora_targets
from seal_lab.settings import ModelSettings
from tests.tiny_model import tiny_llama

FIRST = [TrainingExample("", "The Vellum Bell was cast in 1712 by Pell Arrowby in the town of Qarth.")]
SECOND = [TrainingExample("", "Arrowby's workshop stood by the river until the flood of 1731 took it away.")]


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory):
    torch.set_num_threads(1)
    path = tiny_llama(tmp_path_factory.mktemp("tiny"), seed=1)
    return load_model(ModelSettings(name=path, device="cpu", dtype="float32"))


def directive(**changes) -> Directive:
    base = {"epochs": 2, "learning_rate": 1e-2, "lora_rank": 4, "lora_alpha": 8, "batch_size": 1}
    return Directive(**{**base, "max_length": 64, "steps": 0, **changes})


def train_one(loaded, job: GroupJob) -> TrainOutcome:
    (outcome,) = train_group(loaded, [job])
    assert isinstance(outcome, TrainOutcome), outcome
    assert outcome.adapter is not None
    return outcome


def delta(adapter, name: str) -> torch.Tensor:
    a, b = adapter.weights[name]
    return adapter.scaling * b @ a


def logits(loaded, adapter) -> torch.Tensor:
    targets = lora_targets(loaded.model, "all-linear")
    ids = torch.tensor([[1, 5, 9, 13, 17]])
    with torch.no_grad(), StackedLora(loaded.model, targets, [adapter]).applied() as routing:
        routing.per_row(torch.tensor([0]))
        return loaded.model(input_ids=ids).logits


def test_carried_adapter_keeps_training_its_own_weights(loaded) -> None:
    first = train_one(loaded, GroupJob(FIRST, directive(), 3)).adapter
    carried = train_one(loaded, GroupJob(SECOND, directive(lora_rank=8, lora_alpha=2), 4, init=first))
    adapter = carried.adapter
    assert (adapter.rank, adapter.alpha) == (first.rank, first.alpha)  # the init's, not the directive's
    name = next(iter(first.weights))
    assert not torch.allclose(adapter.weights[name][1], first.weights[name][1])  # it moved on from there
    fresh = train_one(loaded, GroupJob(SECOND, directive(), 4)).adapter
    assert not torch.allclose(adapter.weights[name][1], fresh.weights[name][1])  # not a fresh start


def test_merged_start_is_the_init_exactly_and_stays_frozen(loaded) -> None:
    first = train_one(loaded, GroupJob(FIRST, directive(), 3)).adapter
    targets = lora_targets(loaded.model, "all-linear")
    job = GroupJob(SECOND, directive(lora_rank=2, lora_alpha=4), 5, init=first, merge_init=True)
    start, frozen = start_adapter(loaded.model, targets, job)
    assert (start.rank, frozen) == (first.rank + 2, first.rank)
    torch.testing.assert_close(logits(loaded, start), logits(loaded, first), rtol=0, atol=1e-5)
    merged = train_one(loaded, job).adapter
    assert (merged.rank, merged.alpha) == (first.rank + 2, float(first.rank + 2))  # scaling folded into B
    for name in first.weights:
        a, b = merged.weights[name]
        torch.testing.assert_close(a[: first.rank], first.weights[name][0])  # the merged part: unchanged
        torch.testing.assert_close(b[:, : first.rank], first.weights[name][1] * first.scaling)
        new = b[:, first.rank :] @ a[first.rank :]
        torch.testing.assert_close(delta(merged, name), delta(first, name) + new, rtol=1e-5, atol=1e-6)
    assert any(b[:, first.rank :].abs().sum() > 0 for _, b in merged.weights.values())  # the new part learned


def test_training_from_an_init_is_deterministic(loaded) -> None:
    first = train_one(loaded, GroupJob(FIRST, directive(), 3)).adapter
    runs = [
        train_one(loaded, GroupJob(SECOND, directive(), 7, init=first, merge_init=True)).adapter
        for _ in range(2)
    ]
    for name in first.weights:
        torch.testing.assert_close(runs[0].weights[name][1], runs[1].weights[name][1], rtol=0, atol=0)


# ---- the trainer service: Train from an init adapter, over gRPC ------------------------------------------------


@pytest.fixture(scope="module")
def trainer(tmp_path_factory: pytest.TempPathFactory):
    from seal.v1 import trainer_pb2_grpc
    from seal_lab.serve.host import ModelHost
    from seal_lab.store.local import LocalStore
    from services.trainer.server import TrainerServicer
    from services.trainer.settings import TrainerSettings
    from tests.grpc_harness import serve

    store = LocalStore(tmp_path_factory.mktemp("store"))
    path = tiny_llama(tmp_path_factory.mktemp("tiny-trainer"), seed=1)
    settings = ModelSettings(name=path, device="cpu", dtype="float32", torch_threads=1)
    servicer = TrainerServicer(
        store,
        ModelHost("trainer", settings),
        TrainerSettings(max_epochs=2, max_max_length=64, max_lora_rank=8),
    )
    server = serve(servicer, "seal.v1.Trainer", trainer_pb2_grpc.add_TrainerServicer_to_server)
    yield trainer_pb2_grpc.TrainerStub(server.channel()), store
    server.stop()


def train_call(stub, dataset_key: str, init: str = "", merge: bool = False, rank: int = 4):
    from seal.v1 import trainer_pb2

    request = trainer_pb2.TrainRequest(
        dataset_key=dataset_key,
        directive=directive(lora_rank=rank, lora_alpha=2 * rank, epochs=1).to_proto(),
        seed=3,
        init_adapter_key=init,
        merge_init=merge,
    )
    return list(stub.Train(request, timeout=300))[-1].result


def test_the_trainer_merges_an_init_adapter_and_keys_the_job_by_it(trainer) -> None:
    import json

    import grpc

    from seal_lab.formats.datasets import PolicyMeta, write_dataset

    stub, store = trainer
    first_key = write_dataset(store, PolicyMeta(()), FIRST)
    second_key = write_dataset(store, PolicyMeta(()), SECOND)
    first = train_call(stub, first_key)
    merged = train_call(stub, second_key, init=first.adapter_key, merge=True, rank=2)
    fresh = train_call(stub, second_key, rank=2)
    assert len({first.adapter_key, merged.adapter_key, fresh.adapter_key}) == 3
    config = json.loads(store.get_bytes(f"{merged.adapter_key}/adapter_config.json"))
    assert (config["r"], config["lora_alpha"]) == (6, 6)  # 4 merged + 2 new, scaling folded into B
    meta = json.loads(store.get_bytes(f"{merged.adapter_key}/seal_adapter.json"))
    assert meta["init_adapter_key"] == first.adapter_key and meta["merge_init"] is True
    assert "init_adapter_key" not in json.loads(store.get_bytes(f"{fresh.adapter_key}/seal_adapter.json"))
    again = train_call(stub, second_key, init=first.adapter_key, merge=True, rank=2)
    assert again.reused and again.adapter_key == merged.adapter_key  # the same job: not trained twice
    with pytest.raises(grpc.RpcError) as refused:
        train_call(stub, second_key, init=merged.adapter_key, merge=True, rank=4)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "gives rank 10; this trainer's limit is 8" in refused.value.details()
    with pytest.raises(grpc.RpcError) as refused:
        train_call(stub, second_key, merge=True)
    assert "merge_init needs an init_adapter_key" in refused.value.details()
