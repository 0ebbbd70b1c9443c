"""A whole seal-lab stack on a small random model, for store fault tests that must finish in seconds.

The generator, trainer and evaluator are the real servicers (their real store code) as real gRPC servers,
on a tiny random Llama with the embedded model's tokenizer; the coordinator is the real HTTP app. The
servicers count the work they really do (generations, trainings, evaluations), so a test can assert that
no job was done twice, and offer hooks that hold a call at a chosen point while the test breaks the store.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar

from fastapi.testclient import TestClient

from seal.v1 import evaluator_pb2_grpc, generator_pb2_grpc, trainer_pb2_grpc
from seal_lab.rpc.client import wait_until_serving
from seal_lab.serve.host import ModelHost
from seal_lab.settings import ModelSettings
from seal_lab.store import ObjectStore
from seal_lab.store.outage import OutagePolicy
from services.coordinator.api.app import create_app
from services.coordinator.cli.launcher import free_ports
from services.coordinator.settings import CoordinatorSettings
from services.evaluator.server import EvaluatorServicer
from services.evaluator.settings import EvaluatorSettings
from services.generator.server import GeneratorServicer
from services.trainer.server import TrainerServicer
from services.trainer.settings import TrainerSettings
from tests.grpc_harness import ServerThread, serve

PASSAGE = {
    "title": "The Vellum Bell",
    "context": "The Vellum Bell of Ostrany was cast in 1712 by the founder Pell Arrowby. It weighs 940 kilograms.",
    "questions": [
        {"question": "Who cast the Vellum Bell of Ostrany?", "answer": "Pell Arrowby"},
        {"question": "How much does the Vellum Bell weigh?", "answer": "940 kilograms"},
    ],
}
#: baseline, generate, 2 trainings, evaluate, retention: 6 jobs.
RUN_REQUEST = {
    "name": "store-faults",
    "passages": [PASSAGE],
    "config": {"k": 2, "max_new_tokens": 24, "eval_max_new_tokens": 8, "seed": 11},
}
JOBS = 6
FINISHED = ("succeeded", "completed_with_errors", "failed")
#: Fields that differ between two equal runs: timings, which trainer, whether a cache answered (a retried
#: call finds the work done by its first attempt: reused, the very property under test).
VOLATILE = frozenset(
    {
        "seconds",
        "tokens_per_second",
        "trainer",
        "cached",
        "reused",
        "train_reused",
        "created_at",
        "finished_at",
        "phase_seconds",
    }
)


class Gate:
    """Holds the first `count` calls that reach it until the test opens it; `reached` says one arrived."""

    def __init__(self, count: int = 1) -> None:
        self.count = count
        self.reached = threading.Event()
        self.opened = threading.Event()
        self._lock = threading.Lock()

    def __call__(self) -> None:
        with self._lock:
            if self.count == 0:
                return
            self.count -= 1
        self.reached.set()
        assert self.opened.wait(120), "the test never opened the gate"

    def open(self) -> None:
        self.opened.set()


class CountingTrainer(TrainerServicer):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.trained: collections.Counter[str] = collections.Counter()
        self.gate: Callable[[], None] = lambda: None

    def _train_group(self, group):  # type: ignore[override]
        gated = [dataclasses.replace(q, on_progress=self._gated(q.on_progress)) for q in group]
        results = super()._train_group(gated)
        for queued, result in zip(group, results, strict=True):
            if isinstance(result, tuple) and not result[1]:
                self.trained[queued.job_key] += 1
        return results

    def _gated(self, on_progress):
        def progress(event):
            self.gate()  # inside the training, after the job record was found missing
            on_progress(event)

        return progress


class CountingEvaluator(EvaluatorServicer):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.evaluated: collections.Counter[str] = collections.Counter()
        self.gate: Callable[[], None] = lambda: None

    def _fetch(self, keys):  # type: ignore[override]
        if keys:
            self.gate()  # adapters only; the baseline never waits here
        return super()._fetch(keys)

    def _save(self, cache_key, record):  # type: ignore[override]
        self.evaluated[cache_key] += 1
        return super()._save(cache_key, record)


class CountingGenerator(GeneratorServicer):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.generated: collections.Counter[str] = collections.Counter()

    def _generate(self, backend, request, sampling, fingerprint, cancelled):  # type: ignore[override]
        edits = super()._generate(backend, request, sampling, fingerprint, cancelled)
        self.generated[f"{request.passage.passage_id}/{request.format}/{sampling.seed}"] += 1
        return edits


class Services:
    """Generator, trainer and evaluator on `store`, each a real gRPC server (stop() them all)."""

    def __init__(
        self,
        store: ObjectStore,
        model_path: str,
        outage_seconds: float = 120.0,
        remote: Any = None,
    ) -> None:
        """`remote`: the generator's teacher backend (an OpenAIBackend), instead of the model."""
        model = ModelSettings(name=model_path, device="cpu", dtype="float32")
        self.store = store
        trainer_settings = TrainerSettings(
            max_epochs=2, max_max_length=128, store_outage_seconds=outage_seconds
        )
        evaluator_settings = EvaluatorSettings(store_outage_seconds=outage_seconds)
        self.generator = CountingGenerator(
            store,
            ModelHost("generator", model),
            remote,
            outage=OutagePolicy(max_seconds=outage_seconds),
        )
        self.trainer = CountingTrainer(store, ModelHost("trainer", model), trainer_settings)
        self.evaluator = CountingEvaluator(store, ModelHost("evaluator", model), evaluator_settings)
        self.servers: list[ServerThread] = [
            serve(self.generator, "seal.v1.Generator", generator_pb2_grpc.add_GeneratorServicer_to_server),
            serve(self.trainer, "seal.v1.Trainer", trainer_pb2_grpc.add_TrainerServicer_to_server),
            serve(self.evaluator, "seal.v1.Evaluator", evaluator_pb2_grpc.add_EvaluatorServicer_to_server),
        ]

    def coordinator_settings(self, **overrides: Any) -> CoordinatorSettings:
        generator, trainer, evaluator = (s.address for s in self.servers)
        values: dict[str, Any] = {
            "generator_address": generator,
            "trainer_addresses": [trainer],
            "evaluator_address": evaluator,
            "initial_backoff_seconds": 0.2,
            "max_backoff_seconds": 1.0,
            "lease_ttl_seconds": 3.0,
            **overrides,
        }
        return CoordinatorSettings(**values)

    def work_done_twice(self) -> dict[str, int]:
        counters = (self.generator.generated, self.trainer.trained, self.evaluator.evaluated)
        return {key: n for counter in counters for key, n in counter.items() if n > 1}

    def stop(self) -> None:
        for server in self.servers:
            server.stop()


class ServiceProcess:
    """A model service as a real process on the tiny model and a local store, for SIGKILL and SIGSTOP.

    Run through tests/held_service.py: with `hold`, its first piece of model work waits inside the call (the
    file `hold` says it got there) until the test kills the process; `start()` again on the same port gives a
    process that holds nothing. Settings match `Services`' (float32, max 2 epochs, max length 128), and torch
    uses one thread, so two runs through such processes give the same numbers.
    """

    SERVICES: ClassVar[dict[str, str]] = {
        "generator": "seal.v1.Generator",
        "evaluator": "seal.v1.Evaluator",
        "trainer": "seal.v1.Trainer",
    }

    def __init__(
        self, name: str, model_path: str, store_root: Path, log_dir: Path, hold: bool = False
    ) -> None:
        (port,) = free_ports(1)
        self.name, self.address = name, f"127.0.0.1:{port}"
        self.hold_file = log_dir / f"{name}-{port}.held"
        self.log = log_dir / f"{name}-{port}.log"
        prefix = f"SEAL_{name.upper()}_"
        self.env = {
            **os.environ,
            "SEAL_MODEL_NAME": model_path,
            "SEAL_MODEL_DEVICE": "cpu",
            "SEAL_MODEL_DTYPE": "float32",
            "SEAL_MODEL_TORCH_THREADS": "1",
            "SEAL_STORE_KIND": "local",
            "SEAL_STORE_LOCAL_ROOT": str(store_root),
            f"{prefix}PORT": str(port),
            "SEAL_TRAINER_MAX_EPOCHS": "2",
            "SEAL_TRAINER_MAX_MAX_LENGTH": "128",
        }
        if hold:
            self.env["SEAL_TEST_HOLD_FILE"] = str(self.hold_file)
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> ServiceProcess:
        """Start the process (again, after a kill) and return at once; see `wait_serving`."""
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "tests.held_service", self.name], env=self.env, stdout=out, stderr=out
            )
        return self

    def wait_serving(self, timeout: float = 120) -> None:
        try:
            asyncio.run(wait_until_serving(self.address, timeout=timeout, service=self.SERVICES[self.name]))
        except Exception as exc:
            raise AssertionError(f"{self.name} never served: {exc}\n{self.log.read_text()[-3000:]}") from exc

    def wait_held(self, timeout: float = 120) -> None:
        """Until the held call is under way inside the process."""
        wait_for(self.hold_file.exists, timeout, f"the {self.name}'s held call")

    def kill(self) -> None:
        """SIGKILL, as a crash or the OOM killer would: no drain, no goodbye."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=30)

    def signal(self, number: int) -> None:
        assert self.process is not None and self.process.poll() is None, f"the {self.name} is not running"
        self.process.send_signal(number)

    def __enter__(self) -> ServiceProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.kill()


@contextmanager
def coordinator(store: ObjectStore, settings: CoordinatorSettings) -> Iterator[TestClient]:
    with TestClient(create_app(settings, store)) as client:
        wait_ready(client)
        yield client


def wait_ready(client: TestClient, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while client.get("/healthz").status_code != 200:
        assert time.monotonic() < deadline, "the coordinator never became ready"
        time.sleep(0.05)


def wait_for(predicate: Callable[[], Any], timeout: float = 120, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)
    return value


def wait_finished(client: TestClient, run_id: str, timeout: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while (detail := client.get(f"/v1/runs/{run_id}", params={"events": 2000}).json())[
        "status"
    ] not in FINISHED:
        if time.monotonic() > deadline:
            last = [e["message"] for e in detail["recent_events"][-8:]]
            raise AssertionError(
                f"run {run_id} did not finish: {detail['status']} {detail['current']!r}; {last}"
            )
        time.sleep(0.05)
    return detail


def comparable(value: Any) -> Any:
    """The value without what legitimately differs between two equal runs (timings, cache hits...)."""
    if isinstance(value, dict):
        return {k: comparable(v) for k, v in sorted(value.items()) if k not in VOLATILE}
    if isinstance(value, list):
        return [comparable(v) for v in value]
    return value


def outcome(store: ObjectStore, detail: dict[str, Any]) -> dict[str, Any]:
    """What must be equal to an undisturbed run: every job record and the results' rounds and summary."""
    run_id = detail["id"]
    prefix = f"runs/{run_id}/jobs/"
    jobs = {key.removeprefix(prefix): store.get_json(key) for key in store.list_keys(prefix)}
    results = detail["results"] or {}
    return comparable({"jobs": jobs, "rounds": results.get("rounds"), "summary": results.get("summary")})


def differences(got: Any, want: Any, path: str = "") -> list[str]:
    """Where two outcomes differ (for assertion messages)."""
    if isinstance(got, dict) and isinstance(want, dict):
        out = []
        for key in sorted(set(got) | set(want), key=str):
            if key not in got or key not in want:
                out.append(f"{path}/{key}: only in {'got' if key in got else 'want'}")
            else:
                out += differences(got[key], want[key], f"{path}/{key}")
        return out
    if isinstance(got, list) and isinstance(want, list) and len(got) == len(want):
        return [
            d
            for i, (g, w) in enumerate(zip(got, want, strict=True))
            for d in differences(g, w, f"{path}[{i}]")
        ]
    return [] if got == want else [f"{path}: {got!r} != {want!r}"[:300]]
