"""A trainer process killed (SIGKILL) while it trains a group loses no job: every caller's retry gets its
adapter from the restarted trainer, and a later call gets the same adapter back."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import grpc
import pytest

from seal.v1 import common_pb2, trainer_pb2, trainer_pb2_grpc
from seal_lab.rpc.client import wait_until_serving
from seal_lab.store import sha256_hex
from seal_lab.store.local import LocalStore
from services.coordinator.cli.launcher import free_ports
from tests.tiny_model import tiny_llama

JOBS = 3


@pytest.fixture(scope="module")
def tiny_model_path(tmp_path_factory: pytest.TempPathFactory) -> str:
    return tiny_llama(tmp_path_factory.mktemp("tiny-llama"))


def _dataset(store: LocalStore, number: int) -> str:
    lines = [
        json.dumps({"text": f"Fact {i} of set {number}: the bell number {i} rang {i * number} times."})
        for i in range(24)
    ]
    data = ("\n".join(lines) + "\n").encode()
    key = f"datasets/{sha256_hex(data)}.jsonl"
    store.put_bytes(key, data)
    return key


def _start(env: dict[str, str], log: Path) -> subprocess.Popen:
    with open(log, "ab") as out:
        return subprocess.Popen([sys.executable, "-m", "services.trainer"], env=env, stdout=out, stderr=out)


def test_a_trainer_killed_mid_group_loses_no_job(tmp_path: Path, tiny_model_path: str):
    store = LocalStore(tmp_path / "store")
    keys = [_dataset(store, n) for n in range(1, JOBS + 1)]
    (port,) = free_ports(1)
    env = {
        **os.environ,
        "SEAL_MODEL_NAME": tiny_model_path,
        "SEAL_MODEL_DEVICE": "cpu",
        "SEAL_MODEL_TORCH_THREADS": "1",
        "SEAL_STORE_KIND": "local",
        "SEAL_STORE_LOCAL_ROOT": str(tmp_path / "store"),
        "SEAL_TRAINER_PORT": str(port),
        "SEAL_TRAINER_MAX_GROUP_SIZE": "4",
        "SEAL_TRAINER_GROUP_WINDOW_SECONDS": "1.0",
    }
    address = f"127.0.0.1:{port}"
    process = _start(env, tmp_path / "trainer.log")
    try:
        asyncio.run(wait_until_serving(address, timeout=120, service="seal.v1.Trainer"))
        channel = grpc.insecure_channel(address)
        stub = trainer_pb2_grpc.TrainerStub(channel)
        directive = common_pb2.Directive(
            epochs=6, learning_rate=1e-3, lora_rank=4, lora_alpha=8, batch_size=1, max_length=64
        )
        training = threading.Event()
        results: dict[int, trainer_pb2.TrainResult] = {}
        failures: list[str] = []
        attempts = [0] * JOBS

        def call(index: int) -> None:
            """What the coordinator does: retry on UNAVAILABLE until a result comes."""
            request = trainer_pb2.TrainRequest(dataset_key=keys[index], directive=directive, seed=index)
            deadline = time.monotonic() + 180
            while time.monotonic() < deadline:
                attempts[index] += 1
                try:
                    for event in stub.Train(request, timeout=120):
                        if event.HasField("progress"):
                            training.set()
                        else:
                            results[index] = event.result
                            return
                except grpc.RpcError as exc:
                    if exc.code() != grpc.StatusCode.UNAVAILABLE:
                        failures.append(f"job {index}: {exc.code()} {exc.details()}")
                        return
                time.sleep(0.3)
            failures.append(f"job {index}: no result in time")

        threads = [threading.Thread(target=call, args=(i,)) for i in range(JOBS)]
        for thread in threads:
            thread.start()
        assert training.wait(120), "training never started"
        assert not store.list_keys("trainer-jobs/"), "a job finished before the kill: not mid-group"
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
        process = _start(env, tmp_path / "trainer.log")
        for thread in threads:
            thread.join(timeout=240)
        assert not failures, failures
        assert sorted(results) == list(range(JOBS))
        assert all(a >= 2 for a in attempts), attempts  # every job was cut off and retried
        assert all(r.adapter_key.startswith("adapters/") and not r.reused for r in results.values())
        assert len(store.list_keys("trainer-jobs/")) == JOBS
        # The recorded results are the ones: asked again, the trainer hands back the same adapters.
        for index in range(JOBS):
            request = trainer_pb2.TrainRequest(dataset_key=keys[index], directive=directive, seed=index)
            again = list(stub.Train(request, timeout=60))[-1].result
            assert again.reused and again.adapter_key == results[index].adapter_key
        channel.close()
    finally:
        process.kill()
        process.wait(timeout=30)
