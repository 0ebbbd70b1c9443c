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
