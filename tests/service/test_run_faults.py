"""Runs survive the store failing: each fault ends with results equal to an undisturbed run, no job done twice.

Against a real S3 server (SeaweedFS, killed and started again, or frozen with SIGSTOP so that it accepts
connections and never answers) and a local store on a small tmpfs that fills up. The services are the real
ones on a tiny random model (tests/fault_harness.py), so each run takes seconds.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from fastapi.testclient import TestClient
from grpc_health.v1 import health_pb2, health_pb2_grpc

from seal.v1 import evaluator_pb2_grpc
from seal_lab.errors import StoreUnavailable
from seal_lab.serve.host import ModelHost
from seal_lab.settings import ModelSettings
from seal_lab.store import ObjectStore
from seal_lab.store.local import LocalStore
from seal_lab.store.s3 import S3Store
from services.coordinator.api.app import create_app
from services.coordinator.engine.records import RecordWriter
from services.coordinator.settings import CoordinatorSettings
from services.evaluator.server import EvaluatorServicer
from services.evaluator.settings import EvaluatorSettings
from tests.fault_harness import (
    JOBS,
    RUN_REQUEST,
    Gate,
    Services,
    coordinator,
    differences,
    outcome,
    wait_finished,
    wait_for,
)
from tests.grpc_harness import serve
from tests.s3_server import S3Server, S3ServerInfo, identity_keys, scoped_identity, unique_bucket
from tests.tiny_model import tiny_llama

#: Store calls give up quickly, so an outage shows within a second or two (the defaults are 5 s / 60 s).
FAST_S3 = {"s3_connect_timeout_seconds": 1.0, "s3_read_timeout_seconds": 2.0, "s3_max_retries": 1}


@pytest.fixture(scope="module")
def tiny_model_path(tmp_path_factory: pytest.TempPathFactory) -> str:
    return tiny_llama(tmp_path_factory.mktemp("tiny-llama"))


#: The bucket that the revocation test's services reach with credentials of their own, and those credentials.
SERVICE_BUCKET = unique_bucket()
SERVICE_IDENTITY = scoped_identity("seal-service", SERVICE_BUCKET)


@pytest.fixture(scope="module")
def s3() -> Iterator[S3Server]:
    """A SeaweedFS of this module's own, since the tests kill and freeze it."""
    with S3Server(extra_identities=[SERVICE_IDENTITY]) as server:
        server.start()
        yield server


def s3_store(server: S3Server, bucket: str | None = None) -> S3Store:
    store = S3Store.from_settings(server.info.store_settings(bucket or unique_bucket(), **FAST_S3))
    store.check()  # creates the bucket
    return store


@pytest.fixture(scope="module")
def reference(s3: S3Server, tiny_model_path: str) -> dict[str, Any]:
    """The undisturbed run every fault test must reproduce."""
    store = s3_store(s3)
    services = Services(store, tiny_model_path)
    try:
        with coordinator(store, services.coordinator_settings()) as client:
            run_id = client.post("/v1/runs", json=RUN_REQUEST).json()["id"]
            detail = wait_finished(client, run_id)
        assert detail["status"] == "succeeded", detail["error"]
        assert detail["jobs_done"] == JOBS
        assert services.work_done_twice() == {}
        return outcome(store, detail)
    finally:
        services.stop()


@pytest.fixture
def services_on(tiny_model_path: str) -> Iterator[Any]:
    started: list[Services] = []

    def start(store: ObjectStore) -> Services:
        started.append(Services(store, tiny_model_path))
        return started[-1]

    yield start
    for services in started:
        services.stop()


def store_events(detail: dict[str, Any]) -> list[str]:
    return [e["message"] for e in detail["recent_events"] if e["data"].get("service") == "store"]


def test_s3_killed_mid_run_and_restarted(s3, reference, services_on, monkeypatch):
    store = s3_store(s3)
    services = services_on(store)
    # Outage 1, on the trainer's side: the store dies while an adapter trains; it is saved once it is back.
    services.trainer.gate = gate = Gate()
    # Outage 2, on the coordinator's side: the store dies just before the coordinator records the evaluation.
    writes = RecordWriter.put
    first_back, killed_again = threading.Event(), threading.Event()

    async def put_killing_once(self, key, record, on_retry=None):
        if key.endswith("-evaluate.json") and not killed_again.is_set():
            await asyncio.to_thread(first_back.wait, 60)
            s3.kill()
            killed_again.set()
        return await writes(self, key, record, on_retry)

    monkeypatch.setattr(RecordWriter, "put", put_killing_once)
    with coordinator(store, services.coordinator_settings()) as client:
        run_id = client.post("/v1/runs", json=RUN_REQUEST).json()["id"]
        assert gate.reached.wait(60)
        s3.kill()
        gate.open()
        time.sleep(3.0)
        s3.start()
        first_back.set()
        assert killed_again.wait(60)
        time.sleep(3.0)
        s3.start()
        detail = wait_finished(client, run_id)
    assert detail["status"] == "succeeded", detail["error"]
    assert any("store unavailable during recording job" in m for m in store_events(detail)), store_events(
        detail
    )
    got = outcome(store, detail)
    assert got == reference, differences(got, reference)
    assert services.work_done_twice() == {}


def test_credentials_revoked_mid_run_pause_it_saying_access_is_denied(s3, reference, services_on):
    """The services' S3 key is revoked while an adapter trains (SeaweedFS reads its identities at start, so it
    is started again without the key): every store call gets AccessDenied, which is waited out like an
    outage (s3store: what the caller cannot fix by changing the request is StoreUnavailable). The run
    pauses, saying access is denied; nothing written before is lost; once the key is back it finishes with
    the undisturbed run's results, no job done twice."""
    admin = s3_store(s3, SERVICE_BUCKET)  # creates the bucket, which the scoped key may not
    access, secret = identity_keys(SERVICE_IDENTITY)
    scoped = S3ServerInfo(s3.info.endpoint, access, secret)
    store = S3Store.from_settings(scoped.store_settings(SERVICE_BUCKET, s3_create_bucket=False, **FAST_S3))
    services = services_on(store)
    services.trainer.gate = gate = Gate()
    with coordinator(store, services.coordinator_settings()) as client:
        run_id = client.post("/v1/runs", json=RUN_REQUEST).json()["id"]
        assert gate.reached.wait(60)
        # Everything written so far but the run's lease (rewritten at each renewal, by design).
        written = {key: admin.get_bytes(key) for key in admin.list_keys("") if "/lease/" not in key}
        s3.kill()
        s3.set_identities([])  # revoked
        s3.start()
        with pytest.raises(StoreUnavailable, match=r"^access denied: .*InvalidAccessKeyId"):
            store.put_bytes("probe/revoked", b"x")
        gate.open()  # the trainer finishes and cannot save its adapter
        paused = wait_for(
            lambda: (d := client.get(f"/v1/runs/{run_id}").json())["status"] == "paused" and d, 60, "a pause"
        )
        assert "access denied" in paused["current"], paused["current"]
        s3.kill()
        s3.set_identities([SERVICE_IDENTITY])  # restored
        s3.start()
        detail = wait_finished(client, run_id)
    assert detail["status"] == "succeeded", detail["error"]
    assert any("access denied" in m for m in store_events(detail)), store_events(detail)
    assert {key: admin.get_bytes(key) for key in written} == written
    got = outcome(store, detail)
    assert got == reference, differences(got, reference)
    assert services.work_done_twice() == {}


def test_store_that_accepts_connections_and_never_answers(s3, reference, services_on):
    """SIGSTOP: the kernel still accepts connections, nothing answers. Health stays responsive; calls fail
    within the configured bound; the run pauses and finishes once the store answers again."""
    store = s3_store(s3)
    services = services_on(store)
    services.trainer.gate = gate = Gate()
    trainer_address = services.servers[1].address
    with coordinator(store, services.coordinator_settings()) as client:
        run_id = client.post("/v1/runs", json=RUN_REQUEST).json()["id"]
        assert gate.reached.wait(60)
        os.kill(s3.proc.pid, signal.SIGSTOP)
        try:
            gate.open()
            started = time.monotonic()
            with pytest.raises(StoreUnavailable):
                store.check()
            per_try = FAST_S3["s3_connect_timeout_seconds"] + FAST_S3["s3_read_timeout_seconds"]
            bound = (FAST_S3["s3_max_retries"] + 1) * per_try + 1.0
            assert time.monotonic() - started < bound
            for _ in range(3):  # while the trainer's save hangs on the store
                started = time.monotonic()
                with grpc.insecure_channel(trainer_address) as channel:
                    health = health_pb2_grpc.HealthStub(channel).Check(
                        health_pb2.HealthCheckRequest(), timeout=2
                    )
                assert health.status == health_pb2.HealthCheckResponse.SERVING
                assert client.get("/healthz").status_code == 200
                assert time.monotonic() - started < 2.0
                time.sleep(1.0)
        finally:
            os.kill(s3.proc.pid, signal.SIGCONT)
        detail = wait_finished(client, run_id)
    assert detail["status"] == "succeeded", detail["error"]
    got = outcome(store, detail)
    assert got == reference, differences(got, reference)
    assert services.work_done_twice() == {}


def test_services_wait_for_a_store_that_is_down_at_start(tiny_model_path):
    """Nothing listens at the store's address: health says NOT_SERVING (the coordinator 503), nobody exits."""
    nowhere = S3ServerInfo("127.0.0.1:9", "seal-test-none", "not-a-real-secret-0000")
    store = S3Store.from_settings(nowhere.store_settings(unique_bucket(), **FAST_S3))
    model = ModelSettings(name=tiny_model_path, device="cpu", dtype="float32")
    servicer = EvaluatorServicer(store, ModelHost("evaluator", model), EvaluatorSettings())
    server = serve(
        servicer, "seal.v1.Evaluator", evaluator_pb2_grpc.add_EvaluatorServicer_to_server, load=False
    )
    loading = asyncio.run_coroutine_threadsafe(servicer.load(), server.loop)
    try:
        time.sleep(1.5)
        assert not loading.done()  # still waiting for the store, not crashed
        with grpc.insecure_channel(server.address) as channel:
            health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=2)
        assert health.status == health_pb2.HealthCheckResponse.NOT_SERVING
    finally:
        loading.cancel()
        server.stop()
    with TestClient(create_app(CoordinatorSettings(startup_wait_seconds=0.5), store)) as client:
        for _ in range(3):
            started = time.monotonic()
            response = client.get("/healthz")
            assert response.status_code == 503 and "store" in response.json()["status"]
            created = client.post("/v1/runs", json=RUN_REQUEST)
            assert created.status_code == 503 and "store" in created.json()["detail"]
            assert time.monotonic() - started < 1.0
            time.sleep(0.5)


def test_zero_length_records_are_quarantined_and_redone(s3, reference, services_on):
    """A power cut truncated spec.json, a job record and the trainer's record of that job: the coordinator
    starts anyway, moves them aside, restores the spec from its copy, and redoes only that job."""
    store = s3_store(s3)
    services = services_on(store)
    services.evaluator.gate = gate = Gate()
    settings = services.coordinator_settings()
    with coordinator(store, settings) as client:
        run_id = client.post("/v1/runs", json=RUN_REQUEST).json()["id"]
        assert gate.reached.wait(60)  # both trainings recorded; the evaluation is under way
    gate.open()
    train_job = f"runs/{run_id}/jobs/0000-train-implications-0.json"
    trainer_job = _trainer_job_of(store, train_job)
    for key in (f"runs/{run_id}/spec.json", train_job, trainer_job):
        store.put_bytes(key, b"", overwrite=True)
    with coordinator(store, settings) as client:
        detail = wait_finished(client, run_id)
    assert detail["status"] == "succeeded", detail["error"]
    moved = [e["data"]["quarantine"] for e in detail["recent_events"] if "quarantine" in e["data"]]
    assert any("spec.json" in m for m in moved) and any(train_job in m for m in moved), moved
    assert any(k.startswith(f"quarantine/{trainer_job}") for k in store.list_keys("quarantine/"))
    assert store.get_json(f"runs/{run_id}/spec.json")["id"] == run_id  # restored from the copy
    got = outcome(store, detail)
    assert got == reference, differences(got, reference)
    assert sorted(services.trainer.trained.values()) == [1, 2]  # only the destroyed job was trained again


def _trainer_job_of(store: ObjectStore, job_record_key: str) -> str:
    """The trainer-jobs record whose adapter the coordinator's job record names."""
    adapter = store.get_json(job_record_key)["adapter_key"]
    for key in store.list_keys("trainer-jobs/"):
        if store.get_json(key)["adapter_key"] == adapter:
            return key
    raise AssertionError(f"no trainer-jobs record for {adapter}")


def test_spec_from_a_newer_version_does_not_stop_the_coordinator(local_store: LocalStore):
    spec = {"id": "run-future", "name": "future", "created_at": 1.0, "passages": [], "config": {"warp": 9}}
    local_store.put_json("runs/run-future/spec.json", spec)
    with TestClient(create_app(CoordinatorSettings(), local_store)) as client:
        wait_for(lambda: client.get("/healthz").status_code == 200, 30, "readiness")
        detail = client.get("/v1/runs/run-future").json()
        assert detail["status"] == "failed" and "warp" in detail["error"], detail
        response = client.post("/v1/runs/run-future/resume")
        assert response.status_code == 409 and "cannot run here" in response.json()["detail"]
    assert local_store.get_json("runs/run-future/spec.json") == spec  # left as it was, for that version


def test_two_coordinators_on_one_store(s3, reference, services_on):
    """B never runs A's run while A holds it; when A dies without a goodbye, B takes over after the lease
    expires and finishes, with every job done once."""
    store = s3_store(s3)
    services = services_on(store)
    services.evaluator.gate = gate = Gate()
    settings_a = services.coordinator_settings(instance_id="coordinator-a")
    settings_b = services.coordinator_settings(instance_id="coordinator-b")
    with coordinator(store, settings_b) as b:
        with coordinator(store, settings_a) as a:
            run_id = a.post("/v1/runs", json=RUN_REQUEST).json()["id"]
            assert gate.reached.wait(60)
            seen = wait_for(
                lambda: (r := b.get(f"/v1/runs/{run_id}")).status_code == 200 and r.json(),
                30,
                "B to see the run",
            )
            assert seen["jobs_done"] < JOBS
            time.sleep(2 * settings_b.lease_ttl_seconds)  # renewed by A all along: B keeps its hands off
            assert "another coordinator" in b.get(f"/v1/runs/{run_id}").json()["current"]
            # A dies: no lease release, no more renewals.
            a.app.state.manager.leases.release = lambda lease: None
        gate.open()
        detail = wait_finished(b, run_id)
    assert detail["status"] == "succeeded", detail["error"]
    assert any("taking the run over" in e["message"] for e in detail["recent_events"])
    got = outcome(store, detail)
    assert got == reference, differences(got, reference)
    assert services.work_done_twice() == {}


@pytest.fixture
def small_tmpfs(tmp_path: Path) -> Iterator[Path]:
    mount_point = tmp_path / "tmpfs"
    mount_point.mkdir()
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mount_point)],
        capture_output=True,
        check=False,
    )
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {result.stderr.decode().strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def test_local_store_fills_up_then_gets_space_back(small_tmpfs, reference, services_on, monkeypatch):
    """The disk under a local store fills up as the coordinator records a training: the run pauses with a
    clear "store full" event and finishes once space is back. (The reference ran on S3: nothing in a run's
    outcome depends on the kind of store.)"""
    store = LocalStore(small_tmpfs / "store")
    services = services_on(store)
    ballast = small_tmpfs / "ballast"
    writes = RecordWriter.put
    freed: list[threading.Thread] = []

    def fill_disk() -> None:
        with ballast.open("wb") as handle:
            try:
                while True:
                    handle.write(b"\0" * 65536)
                    handle.flush()
            except OSError:
                pass

    def free_later() -> None:
        time.sleep(3.0)
        ballast.unlink()

    async def put_filling_once(self, key, record, on_retry=None):
        if "-train-" in key and not freed:
            fill_disk()
            freed.append(threading.Thread(target=free_later, daemon=True))
            freed[0].start()
        return await writes(self, key, record, on_retry)

    monkeypatch.setattr(RecordWriter, "put", put_filling_once)
    with coordinator(store, services.coordinator_settings()) as client:
        run_id = client.post("/v1/runs", json=RUN_REQUEST).json()["id"]
        paused = wait_for(
            lambda: (d := client.get(f"/v1/runs/{run_id}").json())["status"] == "paused" and d, 60, "a pause"
        )
        assert "store" in paused["current"]
        detail = wait_finished(client, run_id)
    assert detail["status"] == "succeeded", detail["error"]
    full = [m for m in store_events(detail) if "full" in m]
    assert full and str(small_tmpfs) not in full[0], store_events(detail)
    got = outcome(store, detail)
    assert got == reference, differences(got, reference)
    assert services.work_done_twice() == {}
