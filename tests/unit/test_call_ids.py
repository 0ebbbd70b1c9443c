"""Run and job ids travel with the coordinator's calls: its clients send the ids of the log context they
run in, the engine binds the run's and the job's, a service logs them on every line of the call (so one
grep joins the logs of all processes), and a bad id is dropped with a warning, never an error."""

from __future__ import annotations

import asyncio
import logging

import grpc

from seal.v1 import common_pb2, trainer_pb2, trainer_pb2_grpc
from seal_lab.logging import _ContextFilter, bind_context, current_context
from seal_lab.rpc.callids import JOB_ID_KEY, RUN_ID_KEY, incoming, outgoing
from seal_lab.serve.server import start_server
from seal_lab.store.local import LocalStore
from services.coordinator.engine.clients import ServiceClients
from services.coordinator.engine.manager import RunManager
from services.coordinator.settings import CoordinatorSettings
from tests.unit.fake_services import FakeClients
from tests.unit.recording_trainer import RecordingTrainer, trainer_service
from tests.unit.test_orchestrator import REQUEST, run_to_end, settings

RUN_ID = "run-20261129-144200-abc123"
JOB_ID = "0000-r1-train-implications-0"


def _server_lines(caplog, method: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "seal_lab.serve.server" and method in r.getMessage()]


def test_the_coordinators_clients_send_the_ids_and_the_service_logs_them_on_the_call(caplog):
    caplog.set_level(logging.INFO)
    caplog.handler.addFilter(
        _ContextFilter()
    )  # what configure_logging installs: the bound ids on each record
    servicer = RecordingTrainer()

    async def main() -> None:
        running = await start_server([trainer_service(servicer)], "127.0.0.1", 0)
        address = f"127.0.0.1:{running.port}"
        config = CoordinatorSettings(
            generator_address=address, evaluator_address=address, trainer_addresses=[address]
        )
        clients = ServiceClients(config)
        try:
            with bind_context(run_id=RUN_ID, job_id=JOB_ID):
                await clients.trainers.endpoints[0].stub.GetInfo(common_pb2.GetInfoRequest(), timeout=10)
            await clients.trainers.endpoints[0].stub.GetInfo(common_pb2.GetInfoRequest(), timeout=10)
        finally:
            await clients.close()
            await running.stop(0)

    asyncio.run(main())
    assert servicer.metadata[0][RUN_ID_KEY] == RUN_ID and servicer.metadata[0][JOB_ID_KEY] == JOB_ID
    assert RUN_ID_KEY not in servicer.metadata[1]  # nothing bound, nothing sent
    lines = _server_lines(caplog, "/seal.v1.Trainer/GetInfo")
    assert [line.getMessage().split()[1] for line in lines] == ["started", "answered"] * 2
    assert all(line.seal_context == {"run_id": RUN_ID, "job_id": JOB_ID} for line in lines[:2])
    assert all("run_id" not in line.seal_context for line in lines[2:])


def test_the_engine_binds_the_run_and_the_job_around_each_service_call(tmp_path):
    clients = FakeClients(["trainer-a:1"])
    trainer = clients.trainer["trainer-a:1"]
    seen: list[dict[str, str]] = []
    train = trainer.Train

    def recording_train(request, timeout):
        seen.append(current_context())  # the context the real channel's interceptor reads
        return train(request, timeout)

    trainer.Train = recording_train

    async def main() -> None:
        manager = RunManager(LocalStore(tmp_path / "store"), clients, settings())
        await manager.start()
        try:
            run = await run_to_end(manager, await manager.create(REQUEST))
            assert run.status == "succeeded"
        finally:
            await manager.shutdown()
        assert {context["run_id"] for context in seen} == {run.id}
        assert sorted(context["job_id"] for context in seen) == sorted(n for n in run.jobs if "-train-" in n)

    asyncio.run(main())


def test_bad_ids_are_dropped_with_a_warning_and_the_call_still_answers(caplog):
    caplog.set_level(logging.INFO)
    caplog.handler.addFilter(_ContextFilter())
    servicer = RecordingTrainer()
    bad_run, long_job = "run 1 FAKE LOG LINE", "j" * 201  # gRPC itself refuses a newline

    async def main() -> trainer_pb2.TrainEvent:
        running = await start_server([trainer_service(servicer)], "127.0.0.1", 0)
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
                stub = trainer_pb2_grpc.TrainerStub(channel)
                metadata = ((RUN_ID_KEY, bad_run), (JOB_ID_KEY, long_job))
                events = [
                    e async for e in stub.Train(trainer_pb2.TrainRequest(), metadata=metadata, timeout=10)
                ]
                return events[-1]
        finally:
            await running.stop(0)

    assert asyncio.run(main()).result.adapter_key == "adapters/x"
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(RUN_ID_KEY in w for w in warnings) and any(JOB_ID_KEY in w for w in warnings)
    assert not any("FAKE LOG LINE" in w or long_job in w for w in warnings)  # never echoed
    assert all("run_id" not in r.seal_context for r in _server_lines(caplog, "Train"))


def test_ids_are_checked_both_ways():
    assert outgoing({"run_id": RUN_ID, "job_id": "0001-heldout-teacher-gpt4_1-train", "passage_id": "p"}) == [
        (RUN_ID_KEY, RUN_ID),
        (JOB_ID_KEY, "0001-heldout-teacher-gpt4_1-train"),
    ]
    assert outgoing({"run_id": "has space"}) == []
    assert incoming([(RUN_ID_KEY, RUN_ID), (RUN_ID_KEY, "second"), ("other", "x")]) == {"run_id": RUN_ID}
    assert incoming([(JOB_ID_KEY, b"bytes")]) == {}
