"""A trainer on a tiny model: a Train call whose caller goes away stops its job within seconds and publishes
nothing; in a group only the job nobody waits for stops (the others train as if alone); a trainer full of
calls refuses the next as busy."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest

from seal.v1 import common_pb2, trainer_pb2, trainer_pb2_grpc
from seal_lab.formats.datasets import TrainingExample
from seal_lab.formats.directive import Directive
from seal_lab.model.base import load_model
from seal_lab.model.grouptrain import GroupJob, TrainingCancelled, TrainOutcome, train_group
from seal_lab.rpc.client import open_channel
from seal_lab.rpc.wire import BUSY_CAUSE, CAUSE_KEY
from seal_lab.serve.host import ModelHost
from seal_lab.settings import ModelSettings
from seal_lab.store import sha256_hex
from seal_lab.store.local import LocalStore
from services.trainer.server import TrainerServicer
from services.trainer.settings import TrainerSettings
from tests.grpc_harness import ServerThread, serve
from tests.tiny_model import tiny_llama

#: Far more steps than a test waits for: a job that is not stopped keeps the trainer busy for minutes.
ENDLESS = 100_000


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> str:
    return tiny_llama(tmp_path_factory.mktemp("tiny-llama"))


def _trainer(
    tmp_path: Path, model: str, **settings: object
) -> tuple[ServerThread, TrainerServicer, LocalStore]:
    store = LocalStore(tmp_path / "store")
    values: dict = {"max_steps": ENDLESS, "max_max_length": 64, "max_group_size": 2, **settings}
    model_settings = ModelSettings(name=model, device="cpu", dtype="float32", torch_threads=1)
    servicer = TrainerServicer(store, ModelHost("trainer", model_settings), TrainerSettings(**values))
    return serve(servicer, "seal.v1.Trainer", trainer_pb2_grpc.add_TrainerServicer_to_server), servicer, store


@pytest.fixture
def trainer(tmp_path: Path, tiny_model: str) -> Iterator[tuple[ServerThread, TrainerServicer, LocalStore]]:
    server, servicer, store = _trainer(tmp_path, tiny_model, group_window_seconds=0.0)
    yield server, servicer, store
    server.stop()


def _dataset(store: LocalStore, number: int) -> str:
    lines = [
        json.dumps({"text": f"Fact {i} of set {number}: the bell rang {i * number} times."}) for i in range(4)
    ]
    data = ("\n".join(lines) + "\n").encode()
    key = f"datasets/{sha256_hex(data)}.jsonl"
    store.put_bytes(key, data)
    return key


def _request(dataset_key: str, steps: int, seed: int = 0) -> trainer_pb2.TrainRequest:
    directive = common_pb2.Directive(
        epochs=1, learning_rate=1e-3, lora_rank=2, lora_alpha=4, batch_size=1, max_length=32, steps=steps
    )
    return trainer_pb2.TrainRequest(
        dataset_key=dataset_key, directive=directive, seed=seed, job_id=f"s{seed}"
    )


def _until(condition: Callable[[], bool], timeout: float, what: str) -> float:
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"not within {timeout}s: {what}")
        time.sleep(0.02)
    return time.monotonic() - started


def _result(stub: trainer_pb2_grpc.TrainerStub, request: trainer_pb2.TrainRequest) -> trainer_pb2.TrainResult:
    events = list(stub.Train(request, timeout=60))
    assert events[-1].HasField("result")
    return events[-1].result


def test_a_cancelled_call_stops_its_job_within_seconds_and_publishes_nothing(trainer):
    server, servicer, store = trainer
    key = _dataset(store, 1)
    with server.channel() as channel:
        stub = trainer_pb2_grpc.TrainerStub(channel)
        call = stub.Train(_request(key, ENDLESS), timeout=120)
        assert next(call).HasField("progress")  # training has started
        call.cancel()
        _until(lambda: servicer.jobs_stopped == 1, 5, "the job stops")
        _until(lambda: servicer.call_gate.admitted == 0, 5, "the call leaves the gate")
        # The model worker is free again: a short job is trained at once, not after the endless one.
        started = time.monotonic()
        short = _result(stub, _request(key, steps=2, seed=1))
        assert time.monotonic() - started < 10 and not short.reused
    assert {k.split("/")[1] for k in store.list_keys("adapters/")} == {short.adapter_key.split("/")[1]}
    assert len(store.list_keys("trainer-jobs/")) == 1


def test_a_call_past_its_deadline_stops_its_job(trainer):
    server, servicer, store = trainer
    with server.channel() as channel:
        stub = trainer_pb2_grpc.TrainerStub(channel)
        with pytest.raises(grpc.RpcError) as failed:
            for _ in stub.Train(_request(_dataset(store, 2), ENDLESS), timeout=1.5):
                pass
    assert failed.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    _until(lambda: servicer.jobs_stopped == 1, 5, "the job stops after the deadline")
    assert not store.list_keys("adapters/") and not store.list_keys("trainer-jobs/")


def test_cancelling_the_task_that_streams_a_train_call_stops_the_job(trainer):
    """What a cancelled run does to its training calls (an asyncio task of the coordinator, a grpc.aio stream)."""
    server, servicer, store = trainer
    request = _request(_dataset(store, 8), ENDLESS)

    async def stream_then_cancel() -> None:
        async with open_channel(server.address) as channel:
            stub = trainer_pb2_grpc.TrainerStub(channel)
            started = asyncio.Event()

            async def train() -> None:
                async for _ in stub.Train(request, timeout=120):
                    started.set()

            task = asyncio.create_task(train())
            await asyncio.wait_for(started.wait(), 60)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

    asyncio.run(stream_then_cancel())
    _until(lambda: servicer.jobs_stopped == 1, 5, "the job stops once the run's task is cancelled")
    assert not store.list_keys("adapters/")


def test_in_a_group_only_the_job_nobody_waits_for_stops(tmp_path, tiny_model):
    server, servicer, store = _trainer(tmp_path, tiny_model, group_window_seconds=2.0)
    try:
        with server.channel() as channel:
            stub = trainer_pb2_grpc.TrainerStub(channel)
            endless = stub.Train(_request(_dataset(store, 3), ENDLESS, seed=3), timeout=120)
            finite = stub.Train(_request(_dataset(store, 4), 100, seed=4), timeout=120)
            assert next(endless).progress.total_steps == ENDLESS
            endless.cancel()
            events = list(finite)  # goes on to the end in the same group
            assert (
                events[-1].result.metrics.group_size == 2 and len(events[-1].result.metrics.step_loss) == 100
            )
            # Without its companion the group ends with the finite job: the endless one stopped.
            _until(lambda: servicer.jobs_stopped == 1, 5, "the cancelled job is reported stopped")
        assert {k.split("/")[1] for k in store.list_keys("adapters/")} == {
            events[-1].result.adapter_key.split("/")[1]
        }
    finally:
        server.stop()


def test_identical_calls_share_one_job_that_goes_on_while_one_caller_waits(tmp_path, tiny_model):
    server, servicer, store = _trainer(tmp_path, tiny_model, group_window_seconds=2.0)
    try:
        request = _request(_dataset(store, 5), 100, seed=5)
        with server.channel() as channel:
            stub = trainer_pb2_grpc.TrainerStub(channel)
            first, second = stub.Train(request, timeout=120), stub.Train(request, timeout=120)
            assert next(first).HasField("progress")  # every caller of a shared job sees its progress
            first.cancel()
            result = list(second)[-1].result  # the caller that stayed gets the whole job's adapter
        assert len(result.metrics.step_loss) == 100 and servicer.jobs_stopped == 0
        assert len(store.list_keys("trainer-jobs/")) == 1
    finally:
        server.stop()


def test_a_trainer_at_its_queue_bound_refuses_the_next_call_as_busy(tmp_path, tiny_model):
    server, servicer, store = _trainer(tmp_path, tiny_model, group_window_seconds=0.0, max_queued_jobs=1)
    try:
        with server.channel() as channel:
            stub = trainer_pb2_grpc.TrainerStub(channel)
            busy = stub.Train(_request(_dataset(store, 6), ENDLESS), timeout=120)
            assert next(busy).HasField("progress")
            with pytest.raises(grpc.RpcError) as refused:
                list(stub.Train(_request(_dataset(store, 7), 2), timeout=30))
            assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert (CAUSE_KEY, BUSY_CAUSE) in tuple(refused.value.trailing_metadata())
            assert "SEAL_TRAINER_MAX_QUEUED_JOBS" in refused.value.details()
            busy.cancel()
            _until(lambda: servicer.call_gate.admitted == 0, 5, "the cancelled call leaves the gate")
            assert _result(stub, _request(_dataset(store, 7), 2)).adapter_key  # admitted again
        assert servicer.call_gate.refused == 1
    finally:
        server.stop()


def test_a_group_stops_a_cancelled_job_at_its_next_step_and_trains_the_others_as_if_alone(tiny_model):
    loaded = load_model(ModelSettings(name=tiny_model, device="cpu", dtype="float32"))
    texts = [
        TrainingExample("", f"Fact {i}: the bell of tower {i} rang {i * 3} times at noon.") for i in range(4)
    ]
    directive = Directive(
        learning_rate=1e-3, lora_rank=4, lora_alpha=8, batch_size=1, max_length=64, steps=10
    )
    asked = 0

    def gone_after_three_steps() -> bool:
        nonlocal asked
        asked += 1
        return asked > 3

    cancelled, kept = train_group(
        loaded,
        [GroupJob(texts, directive, 1, cancelled=gone_after_three_steps), GroupJob(texts, directive, 2)],
    )
    (alone,) = train_group(loaded, [GroupJob(texts, directive, 2)])
    assert isinstance(cancelled, TrainingCancelled) and "before step 4" in cancelled.message
    assert asked == 4  # asked before each step until it said yes, never after
    assert isinstance(kept, TrainOutcome) and isinstance(alone, TrainOutcome) and kept.adapter is not None
    assert kept.group_size == 2 and kept.step_loss == pytest.approx(alone.step_loss, abs=1e-4)
