"""Trainers found by DNS (`dns:///name:port`): a name served by the test's own resolver, real gRPC trainers on
loopback, the coordinator's run engine over them. Trainers that appear get jobs (their group size asked
first), trainers that go away get none (their running jobs finish, or fail and are retried on another), a
failed resolution keeps the trainers found before, and a name with no address makes jobs wait."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
import trustme
from pydantic import SecretStr

from seal.v1 import common_pb2, trainer_pb2, trainer_pb2_grpc
from seal_lab.formats.directive import DirectiveLimits
from seal_lab.rpc.client import channel_options, open_channel
from seal_lab.security import Security, TlsSettings
from seal_lab.serve.server import RunningServer, start_server
from seal_lab.store.local import LocalStore
from services.coordinator.engine.clients import ServiceClients, TrainerEndpoint, TrainerPool, connect_trainer
from services.coordinator.engine.discovery import address_of, system_resolver
from services.coordinator.engine.manager import RunManager
from services.coordinator.run.jobs import JobName
from services.coordinator.settings import CoordinatorSettings
from tests.tls_fixtures import TOKEN
from tests.unit.fake_services import FINGERPRINT, FakeEvaluator, FakeGenerator, FakeTrainer
from tests.unit.recording_trainer import trainer_service
from tests.unit.test_orchestrator import REQUEST, run_to_end, settings, until

NAME = "trainers.test"
TARGET = f"dns:///{NAME}:50052"


class Resolver:
    """The test's DNS: `answer` is what the name resolves to now; `error` makes the next lookups fail."""

    def __init__(self, *addresses: str) -> None:
        self.answer = list(addresses)
        self.error: OSError | None = None
        self.asked = 0

    async def __call__(self, host: str, port: int) -> list[str]:
        assert (host, port) == (NAME, 50052)
        self.asked += 1
        if self.error is not None:
            raise self.error
        return list(self.answer)


class Trainer(trainer_pb2_grpc.TrainerServicer):
    """A Trainer servicer that trains nothing; `held` keeps its Train calls open until released."""

    def __init__(self, group: int = 1) -> None:
        self.group = group
        self.started: list[str] = []  # dataset keys, in the order their Train calls came
        self.finished: list[str] = []
        self.held = asyncio.Event()
        self.held.set()

    async def load(self) -> None:
        pass

    async def GetInfo(self, request: Any, context: Any) -> common_pb2.ServiceInfo:
        limits = DirectiveLimits().to_proto()
        return common_pb2.ServiceInfo(
            service="trainer", model_fingerprint=FINGERPRINT, limits=limits, max_group_size=self.group
        )

    async def Train(self, request: Any, context: Any) -> AsyncIterator[trainer_pb2.TrainEvent]:
        self.started.append(request.dataset_key)
        await self.held.wait()
        self.finished.append(request.dataset_key)
        metrics = trainer_pb2.TrainMetrics(tokens=100, seconds=2.0, steps=2, step_loss=[1.5, 1.0])
        key = f"adapters/{request.dataset_key.rsplit('/', 1)[-1]}"
        yield trainer_pb2.TrainEvent(result=trainer_pb2.TrainResult(adapter_key=key, metrics=metrics))


async def serve(servicer: Trainer, security: Security | None = None) -> tuple[RunningServer, str]:
    running = await start_server([trainer_service(servicer)], "127.0.0.1", 0, security)
    await running.set_serving(True)
    return running, f"127.0.0.1:{running.port}"


class Clients:
    """What RunManager uses of ServiceClients: fake generator and evaluator, real trainers behind one name."""

    def __init__(self, trainers: TrainerPool) -> None:
        self.generator, self.evaluator, self.trainers = FakeGenerator(), FakeEvaluator(), trainers
        self.generator_slot, self.evaluator_slot = asyncio.Semaphore(1), asyncio.Semaphore(1)


def _run(main: Any) -> Any:
    return asyncio.run(asyncio.wait_for(main(), timeout=20))


def addresses(pool: TrainerPool) -> list[str]:
    return sorted(endpoint.address for endpoint in pool.endpoints)


def test_a_run_spreads_its_trainings_over_the_trainers_that_come_and_go(tmp_path):
    a, b, c = Trainer(), Trainer(), Trainer(group=2)

    async def main() -> None:
        (server_a, at_a), (server_b, at_b), (server_c, at_c) = [await serve(t) for t in (a, b, c)]
        resolver = Resolver(at_a, at_b)
        pool = TrainerPool([TARGET], connect_trainer, resolver, interval=0.02)
        closed: list[str] = []
        a_close = None
        manager = RunManager(LocalStore(tmp_path / "store"), Clients(pool), settings([TARGET]))
        await manager.start()
        try:
            for trainer in (a, b, c):
                trainer.held.clear()
            run = await manager.create(REQUEST)  # 2 passages, 2 self-edits each: 4 trainings, 4 at once
            await until(lambda: len(a.started) == 1 and len(b.started) == 1, timeout=10)

            resolver.answer = [at_a, at_b, at_c]  # a trainer appears: asked its group size, then given jobs
            await until(lambda: len(c.started) == 2, timeout=10)
            assert {e.address: e.capacity for e in pool.endpoints}[at_c] == 2

            a_endpoint = next(e for e in pool.endpoints if e.address == at_a)
            a_close = a_endpoint.channel.close

            async def recorded_close(*args: Any) -> None:
                closed.append(at_a)
                await a_close(*args)

            a_endpoint.channel.close = recorded_close  # type: ignore[method-assign]
            resolver.answer = [at_b, at_c]  # A goes away with a job running: that job finishes there
            await until(lambda: at_a not in addresses(pool), timeout=10)
            assert not closed  # its job still uses the channel
            a.held.set()
            await until(lambda: closed == [at_a], timeout=10)  # closed once its last job ended

            resolver.answer = [at_c]  # B goes away and stops: its running job fails and is retried on C
            await until(lambda: addresses(pool) == [at_c], timeout=10)
            await server_b.stop(0)
            c.held.set()
            run = await run_to_end(manager, run)
        finally:
            await manager.shutdown()
            await pool.close()
            for server in (server_a, server_b, server_c):
                await server.stop(0)

        assert run.status == "succeeded"
        trained = {
            name: r.model_dump() for name, r in run.jobs.items() if JobName.parse(name).step == "train"
        }
        assert len(trained) == 4
        datasets = sorted(a.finished + b.finished + c.finished)  # each training done once, somewhere
        assert len(set(datasets)) == len(datasets) == 4
        assert len({record["adapter_key"] for record in trained.values()}) == 4
        assert a.started == a.finished and len(a.started) == 1  # no job after it went away
        assert len(b.started) == 1 and not b.finished
        assert len(c.started) == 3  # two when it appeared, then B's job
        assert sorted(r["trainer"] for r in trained.values()) == sorted([at_a, at_c, at_c, at_c])
        retried = [e.data for e in run.events if e.kind == "retry"]
        assert [e["address"] for e in retried] == [at_b]

    _run(main)


def _fake_pool(resolver: Resolver, fakes: dict[str, FakeTrainer]) -> TrainerPool:
    def connect(address: str, server_name: str = "") -> TrainerEndpoint:
        assert server_name == NAME
        return TrainerEndpoint(address, None, fakes.setdefault(address, FakeTrainer()))  # type: ignore[arg-type]

    return TrainerPool([TARGET], connect, resolver, interval=0.02)


def test_a_failed_resolution_keeps_the_trainers_found_before(caplog):
    resolver = Resolver("10.0.0.1:50052", "10.0.0.2:50052")
    pool = _fake_pool(resolver, {})

    async def main() -> None:
        assert addresses(await _present(pool)) == ["10.0.0.1:50052", "10.0.0.2:50052"]
        resolver.error = OSError("Temporary failure in name resolution")
        asked = resolver.asked
        await until(lambda: resolver.asked >= asked + 3, timeout=5)
        assert addresses(pool) == ["10.0.0.1:50052", "10.0.0.2:50052"]
        resolver.error, resolver.answer = None, ["10.0.0.2:50052"]
        await until(lambda: addresses(pool) == ["10.0.0.2:50052"], timeout=5)
        await pool.close()

    with caplog.at_level(logging.WARNING, "services.coordinator.engine.clients"):
        _run(main)
    warning = next(r.getMessage() for r in caplog.records if "resolving" in r.getMessage())
    assert warning == (
        f"trainer discovery: resolving {TARGET} failed (Temporary failure in name resolution); "
        "keeping the 2 trainer(s) found before"
    )


async def _present(pool: TrainerPool) -> TrainerPool:
    await pool.present()
    return pool


def test_with_no_trainer_a_job_waits_without_an_attempt_and_goes_on_when_one_appears():
    resolver = Resolver()
    fakes: dict[str, FakeTrainer] = {}
    pool = _fake_pool(resolver, fakes)
    told: list[str] = []

    async def main() -> None:
        async def job() -> str:
            async with pool.acquire(on_empty=told.append) as endpoint:
                return endpoint.address

        waiting = asyncio.create_task(job())
        await until(lambda: resolver.asked >= 3, timeout=5)
        assert not waiting.done() and told and set(told) == {f"none found at {TARGET}"}
        resolver.answer = ["10.0.0.7:50052"]
        assert await asyncio.wait_for(waiting, 5) == "10.0.0.7:50052"
        assert fakes["10.0.0.7:50052"].calls["GetInfo"] == 1  # its group size, asked before the job
        await pool.close()

    _run(main)


def test_a_run_started_while_no_trainer_is_found_waits_and_then_succeeds(tmp_path):
    resolver = Resolver()
    fakes: dict[str, FakeTrainer] = {}
    pool = _fake_pool(resolver, fakes)

    async def main() -> None:
        manager = RunManager(LocalStore(tmp_path / "store"), Clients(pool), settings([TARGET]))
        await manager.start()
        try:
            run = await manager.create(REQUEST)
            await until(lambda: run.current.startswith("waiting for a trainer"), timeout=5)
            assert run.current == f"waiting for a trainer: none found at {TARGET}"
            assert manager.calls.stats.pending["trainer"] == 1  # what an autoscaler sees
            await asyncio.sleep(0.1)
            assert run.status == "running" and run.retries == 0 and not run.jobs
            resolver.answer = ["10.0.0.9:50052"]
            run = await run_to_end(manager, run)
        finally:
            await manager.shutdown()
            await pool.close()
        assert run.status == "succeeded" and run.retries == 0
        assert run.services.model_dump()["trainers"][0]["address"] == "10.0.0.9:50052"
        assert fakes["10.0.0.9:50052"].calls["Train"] == 4

    _run(main)


def test_a_trainer_found_by_dns_is_checked_against_the_certificate_of_its_name(tmp_path):
    ca = trustme.CA()
    issued = ca.issue_cert(NAME)  # the Service's name, not the pod's IP
    for path, pem in (("ca.pem", ca.cert_pem), ("cert.pem", issued.cert_chain_pems[0])):
        pem.write_to_path(str(tmp_path / path))
    issued.private_key_pem.write_to_path(str(tmp_path / "key.pem"))
    server_tls = TlsSettings(cert_file=tmp_path / "cert.pem", key_file=tmp_path / "key.pem")
    client = Security(token=SecretStr(TOKEN), tls=TlsSettings(ca_file=tmp_path / "ca.pem"))

    async def main() -> None:
        running, address = await serve(Trainer(group=3), Security(token=SecretStr(TOKEN), tls=server_tls))
        pool = TrainerPool([TARGET], lambda a, name: connect_trainer(a, name, client), Resolver(address))
        try:
            (endpoint,) = await pool.present()
            # GetInfo answered over TLS, with the token: the trainer's group size, not the default of 1
            assert endpoint.address == address and endpoint.capacity == 3
            async with open_channel(address, client) as by_ip:  # the IP is not what the certificate names
                with pytest.raises(grpc.aio.AioRpcError) as refused:
                    await trainer_pb2_grpc.TrainerStub(by_ip).GetInfo(common_pb2.GetInfoRequest(), timeout=5)
            assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        finally:
            await pool.close()
            await running.stop(0)

    _run(main)


def test_channel_options_name_the_certificate_and_balance_a_dns_address():
    assert ("grpc.ssl_target_name_override", NAME) in channel_options("10.0.0.1:50052", NAME, tls=True)
    assert not any(k == "grpc.ssl_target_name_override" for k, _ in channel_options("10.0.0.1:1", NAME))
    options = dict(channel_options("dns:///generator.seal.svc:50051"))
    assert options["grpc.service_config"] == '{"loadBalancingConfig": [{"round_robin": {}}]}'
    assert "grpc.service_config" not in dict(channel_options("generator:50051"))


@pytest.mark.parametrize("entry", ["dns:trainer:50052", "dns:///trainer", "dns:///:50052", "dns:///t:99999"])
def test_a_malformed_dns_entry_is_refused_with_the_form_to_use(entry):
    with pytest.raises(ValueError, match="dns:///") as refused:
        CoordinatorSettings(trainer_addresses=[entry])
    assert entry in str(refused.value)


def test_dns_entries_and_plain_addresses_mix_and_the_interval_is_a_setting(monkeypatch):
    monkeypatch.setenv("SEAL_COORDINATOR_TRAINER_ADDRESSES", f"gpu-a:50052, {TARGET}")
    monkeypatch.setenv("SEAL_COORDINATOR_DISCOVERY_INTERVAL_SECONDS", "2.5")
    config = CoordinatorSettings()
    assert config.trainer_addresses == ["gpu-a:50052", TARGET] and config.discovery_interval_seconds == 2.5
    pool = TrainerPool(config.trainer_addresses, lambda a, name="": TrainerEndpoint(a, None, None))  # type: ignore[arg-type]
    assert addresses(pool) == ["gpu-a:50052"]  # the listed one at once; the name's at the first resolution


def test_the_generator_and_evaluator_take_as_many_calls_at_once_as_their_replicas():
    async def main() -> None:
        config = CoordinatorSettings(
            generator_address="dns:///generator.test:50051", generator_concurrency=3, evaluator_concurrency=2
        )
        clients = ServiceClients(config)
        try:
            for slot, replicas in ((clients.generator_slot, 3), (clients.evaluator_slot, 2)):
                for _ in range(replicas):
                    assert not slot.locked()
                    await slot.acquire()
                assert slot.locked()  # the next call waits for one of them
        finally:
            await clients.close()

    _run(main)


def test_the_system_resolver_lists_a_names_addresses_as_grpc_takes_them():
    found = asyncio.run(system_resolver("localhost", 50052))
    assert "127.0.0.1:50052" in found and found == sorted(set(found))
    assert address_of("::1", 50052) == "[::1]:50052"


def test_a_name_that_does_not_exist_has_no_trainer_and_a_failed_lookup_is_an_error():
    """Kubernetes answers NXDOMAIN for a headless Service scaled to zero: no trainers, not a failure."""

    async def lookup(error: socket.gaierror) -> list[str]:
        async def getaddrinfo(*args: Any, **kwargs: Any) -> Any:
            raise error

        asyncio.get_running_loop().getaddrinfo = getaddrinfo  # type: ignore[method-assign]
        return await system_resolver(NAME, 50052)

    not_found = socket.gaierror(socket.EAI_NONAME, "Name or service not known")
    assert asyncio.run(lookup(not_found)) == []
    with pytest.raises(socket.gaierror):
        asyncio.run(lookup(socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")))


def test_the_coordinators_clients_start_discovery_with_the_app():
    resolver = Resolver("127.0.0.1:1")

    async def main() -> None:
        clients = ServiceClients(
            CoordinatorSettings(
                trainer_addresses=[TARGET], discovery_interval_seconds=0.02, info_timeout_seconds=1
            ),
            resolver=resolver,
        )
        try:
            await until(lambda: addresses(clients.trainers) == ["127.0.0.1:1"], timeout=5)
        finally:
            await clients.close()

    _run(main)
