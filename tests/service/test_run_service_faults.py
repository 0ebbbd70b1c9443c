"""Runs survive their model services failing: a generator and an evaluator SIGKILLed mid-call and started
again, one of two trainers frozen (SIGSTOP) past the coordinator's deadline, an OpenAI-compatible teacher that
refuses connections, answers 500 or is slow. The store is a local directory; the services are the real ones
on a tiny random model (tests/fault_harness.py), as real processes where a signal must reach them
(tests/held_service.py holds their first call, so the signal lands mid-call every time).
"""

from __future__ import annotations

import signal
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from seal_lab.store.local import LocalStore
from services.generator.backends import OpenAIBackend
from tests.fault_harness import (
    JOBS,
    RUN_REQUEST,
    ServiceProcess,
    Services,
    coordinator,
    differences,
    outcome,
    wait_finished,
)
from tests.service.test_teacher_backend import FakeTeacher
from tests.tiny_model import tiny_llama


@pytest.fixture(scope="module")
def tiny_model_path(tmp_path_factory: pytest.TempPathFactory) -> str:
    return tiny_llama(tmp_path_factory.mktemp("tiny-llama"))


def _run(
    services: Services, store: LocalStore, request: dict[str, Any] = RUN_REQUEST, **overrides: Any
) -> dict[str, Any]:
    with coordinator(store, services.coordinator_settings(**overrides)) as client:
        run_id = client.post("/v1/runs", json=request).json()["id"]
        return wait_finished(client, run_id)


def retries(detail: dict[str, Any], service: str) -> list[str]:
    return [
        e["message"]
        for e in detail["recent_events"]
        if e["kind"] == "retry" and e["data"].get("service") == service
    ]


# ---------------------------------------------------------------------------------------------------------
# The generator and the evaluator SIGKILLed mid-call.
# ---------------------------------------------------------------------------------------------------------


@contextmanager
def generator_and_evaluator(model_path: str, root: Path, hold: bool) -> Iterator[list[ServiceProcess]]:
    """The generator and the evaluator as serving processes on the local store at root/store."""
    with (
        ServiceProcess("generator", model_path, root / "store", root, hold) as generator,
        ServiceProcess("evaluator", model_path, root / "store", root, hold) as evaluator,
    ):
        generator.start(), evaluator.start()
        generator.wait_serving(), evaluator.wait_serving()
        yield [generator, evaluator]


def _run_on_processes(model_path: str, root: Path, hold: bool) -> tuple[LocalStore, dict[str, Any]]:
    """A run of RUN_REQUEST with the trainer in this process; with `hold`, the generator and the evaluator
    are each SIGKILLed in the middle of their first model work and started again."""
    store = LocalStore(root / "store")
    services = Services(store, model_path)
    try:
        with generator_and_evaluator(model_path, root, hold) as (generator, evaluator):
            settings = services.coordinator_settings(
                generator_address=generator.address, evaluator_address=evaluator.address
            )
            with coordinator(store, settings) as client:
                run_id = client.post("/v1/runs", json=RUN_REQUEST).json()["id"]
                for process in (generator, evaluator) if hold else ():
                    process.wait_held()
                    process.kill()
                    process.start()
                detail = wait_finished(client, run_id)
    finally:
        services.stop()
    assert detail["status"] == "succeeded", detail["error"]
    assert detail["jobs_done"] == JOBS
    return store, detail


@pytest.fixture(scope="module")
def process_reference(tiny_model_path: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """An undisturbed run with the generator and the evaluator as processes (as in the fault test: the same
    torch thread count gives the same numbers)."""
    store, detail = _run_on_processes(tiny_model_path, tmp_path_factory.mktemp("reference"), hold=False)
    return outcome(store, detail)


def test_generator_and_evaluator_killed_mid_call_and_restarted(
    tiny_model_path: str, tmp_path: Path, process_reference: dict[str, Any]
) -> None:
    store, detail = _run_on_processes(tiny_model_path, tmp_path, hold=True)
    for service in ("generator", "evaluator"):
        assert retries(detail, service), f"the {service}'s call was never cut off and retried"
    got = outcome(store, detail)
    assert got == process_reference, differences(got, process_reference)


# ---------------------------------------------------------------------------------------------------------
# Two trainers, one frozen past the coordinator's deadline.
# ---------------------------------------------------------------------------------------------------------


SECOND_PASSAGE = {
    "title": "The Orrin Lamp",
    "context": "The Orrin Lamp was lit in 1840 by the keeper Mara Tolle. It burns whale oil.",
    "questions": [{"question": "Who lit the Orrin Lamp?", "answer": "Mara Tolle"}],
}
#: Two passages one after the other (SEAL_COORDINATOR_MAX_CONCURRENT_PASSAGES=1): the second passage's two
#: trainings are asked for after the frozen trainer has missed its deadline on one of the first passage's.
TWO_PASSAGES = {**RUN_REQUEST, "passages": [RUN_REQUEST["passages"][0], SECOND_PASSAGE]}
ONE_PASSAGE_AT_A_TIME = {"max_concurrent_passages": 1}
#: The coordinator's deadline for one Train call in the stall test: the healthy trainer needs about a second.
TRAIN_DEADLINE_S = 6.0


@pytest.fixture(scope="module")
def two_passages_reference(tiny_model_path: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """An undisturbed run of TWO_PASSAGES with every service in this process."""
    store = LocalStore(tmp_path_factory.mktemp("in-process") / "store")
    services = Services(store, tiny_model_path)
    try:
        detail = _run(services, store, TWO_PASSAGES, **ONE_PASSAGE_AT_A_TIME)
    finally:
        services.stop()
    assert detail["status"] == "succeeded", detail["error"]
    return outcome(store, detail)


def test_a_trainer_frozen_past_the_deadline_has_its_job_done_by_the_other(
    tiny_model_path: str, tmp_path: Path, two_passages_reference: dict[str, Any]
) -> None:
    store = LocalStore(tmp_path / "store")
    services = Services(store, tiny_model_path)
    healthy = services.servers[1].address
    with ServiceProcess("trainer", tiny_model_path, tmp_path / "store", tmp_path, hold=True) as frozen:
        frozen.start().wait_serving()
        settings = services.coordinator_settings(
            trainer_addresses=[frozen.address, healthy],
            train_timeout_seconds=TRAIN_DEADLINE_S,
            **ONE_PASSAGE_AT_A_TIME,
        )
        try:
            with coordinator(store, settings) as client:
                run_id = client.post("/v1/runs", json=TWO_PASSAGES).json()["id"]
                frozen.wait_held()
                frozen.signal(signal.SIGSTOP)  # its health checks hang too, as a stuck host's would
                detail = wait_finished(client, run_id)
        finally:
            services.stop()
    assert detail["status"] == "succeeded", detail["error"]
    assert detail["jobs_done"] == detail["jobs_total"]
    trainers = [j["trainer"] for k, j in outcome_jobs(store, run_id).items() if "-train-" in k]
    assert trainers == [healthy] * 4, trainers
    missed = [m for m in retries(detail, "trainer") if frozen.address in m]
    assert missed and all("DEADLINE_EXCEEDED" in m for m in missed), retries(detail, "trainer")
    # Once it missed a deadline the frozen trainer gets no other job (for the pool's 30 s cooldown) while
    # the healthy one answers: the second passage's trainings do not wait out a deadline of their own.
    assert len(missed) == 1, missed
    got = outcome(store, detail)
    assert got == two_passages_reference, differences(got, two_passages_reference)


def outcome_jobs(store: LocalStore, run_id: str) -> dict[str, Any]:
    prefix = f"runs/{run_id}/jobs/"
    return {key.removeprefix(prefix): store.get_json(key) for key in store.list_keys(prefix)}


# ---------------------------------------------------------------------------------------------------------
# An OpenAI-compatible teacher that refuses connections, answers 500, or is slow.
# ---------------------------------------------------------------------------------------------------------

#: The generator tries the teacher twice per call, the coordinator calls the generator three times.
TEACHER_TRIES, GENERATOR_ATTEMPTS = 2, 3
TEACHER_TIMEOUT_S = 1.0


@pytest.fixture(scope="module")
def teacher() -> Iterator[FakeTeacher]:
    with FakeTeacher() as running:
        yield running


@pytest.fixture
def teacher_run(tiny_model_path: str, tmp_path: Path):
    started: list[Services] = []

    def run(base_url: str) -> tuple[dict[str, Any], float]:
        backend = OpenAIBackend(
            base_url,
            "teacher-model",
            "sk-test-teacher",
            timeout_seconds=TEACHER_TIMEOUT_S,
            max_retries=TEACHER_TRIES - 1,
            initial_backoff_seconds=0.05,
        )
        store = LocalStore(tmp_path / f"store-{len(started)}")
        started.append(Services(store, tiny_model_path, remote=backend))
        began = time.monotonic()
        detail = _run(started[-1], store, max_attempts=GENERATOR_ATTEMPTS)
        return detail, time.monotonic() - began

    yield run
    for services in started:
        services.stop()


def _assert_clear_teacher_failure(detail: dict[str, Any], reason: str) -> None:
    assert detail["status"] == "failed", detail
    error = detail["error"]
    assert "teacher endpoint" in error and reason in error, error
    assert f"after {GENERATOR_ATTEMPTS} attempts" in error and f"after {TEACHER_TRIES} tries" in error, error
    assert "Traceback" not in error and "sk-test-teacher" not in error, error
    assert len(retries(detail, "generator")) == GENERATOR_ATTEMPTS - 1


def test_a_teacher_that_answers_500_fails_the_run_after_bounded_retries(teacher, teacher_run):
    teacher.status, teacher.requests[:] = 500, []
    try:
        detail, _ = teacher_run(f"http://127.0.0.1:{teacher.port}/v1")
    finally:
        teacher.status = 200
    _assert_clear_teacher_failure(detail, "HTTP 500")
    assert len(teacher.requests) == GENERATOR_ATTEMPTS * TEACHER_TRIES


def test_a_teacher_that_refuses_connections_fails_the_run_after_bounded_retries(teacher_run):
    with socket.create_server(("127.0.0.1", 0)) as sock:
        port = sock.getsockname()[1]  # closed when the block ends: nothing listens there
    detail, _ = teacher_run(f"http://127.0.0.1:{port}/v1")
    _assert_clear_teacher_failure(detail, "unreachable (ConnectError)")


def test_a_slow_teacher_times_out_each_try(teacher, teacher_run):
    teacher.delay_seconds, teacher.requests[:] = 10 * TEACHER_TIMEOUT_S, []
    try:
        detail, seconds = teacher_run(f"http://127.0.0.1:{teacher.port}/v1")
    finally:
        teacher.delay_seconds = 0.0
    _assert_clear_teacher_failure(detail, "did not answer (ReadTimeout)")
    assert len(teacher.requests) == GENERATOR_ATTEMPTS * TEACHER_TRIES
    # Each try gave up after the timeout, not after the teacher's 10 s.
    assert seconds < GENERATOR_ATTEMPTS * TEACHER_TRIES * TEACHER_TIMEOUT_S + 20, seconds


def test_a_teacher_slow_once_and_then_well_gets_the_run_done(teacher, teacher_run):
    teacher.slow_first, teacher.requests[:] = [10 * TEACHER_TIMEOUT_S], []
    detail, _ = teacher_run(f"http://127.0.0.1:{teacher.port}/v1")
    assert detail["status"] == "succeeded", detail["error"]
    assert detail["jobs_done"] == JOBS
    assert len(teacher.requests) == RUN_REQUEST["config"]["k"] + 1  # the timed-out try, then one per sample
