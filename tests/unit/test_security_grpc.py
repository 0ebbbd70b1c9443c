"""gRPC authentication and TLS: every method of the three services (read from their descriptors, so a new
RPC is covered without touching this file) refuses a call without the token or with a wrong one, health
stays open, the clients send the token, and TLS (mutual as an option) works with certificates made here."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
import pytest
from google.protobuf import message_factory
from google.protobuf.descriptor import MethodDescriptor, ServiceDescriptor
from grpc_health.v1 import health_pb2, health_pb2_grpc
from pydantic import SecretStr

from seal.v1 import (
    common_pb2,
    evaluator_pb2,
    evaluator_pb2_grpc,
    generator_pb2,
    generator_pb2_grpc,
    trainer_pb2,
    trainer_pb2_grpc,
)
from seal_lab.rpc.client import open_channel
from seal_lab.rpc.healthcheck import _check as probe
from seal_lab.security import Security
from seal_lab.serve.server import GrpcService, RunningServer, start_server
from tests.tls_fixtures import TOKEN, WRONG_TOKEN, LabCertificates, make_certificates

SERVICES: list[tuple[ServiceDescriptor, Any]] = [
    (service, module_grpc)
    for module, module_grpc in (
        (generator_pb2, generator_pb2_grpc),
        (trainer_pb2, trainer_pb2_grpc),
        (evaluator_pb2, evaluator_pb2_grpc),
    )
    for service in module.DESCRIPTOR.services_by_name.values()
]
METHODS = [(service, method) for service, _ in SERVICES for method in service.methods]
WITH_TOKEN = Security(token=SecretStr(TOKEN))


def _fake_servicer(service: ServiceDescriptor) -> Any:
    """Answers every method with an empty response (a stream of one): what the token lets through."""
    methods: dict[str, Callable[..., Any]] = {}
    for method in service.methods:
        response = message_factory.GetMessageClass(method.output_type)
        if method.server_streaming:

            async def stream(
                self: Any, request: Any, context: Any, response: Any = response
            ) -> AsyncIterator:
                yield response()

            methods[method.name] = stream
        else:

            async def unary(self: Any, request: Any, context: Any, response: Any = response) -> Any:
                return response()

            methods[method.name] = unary
    return type(f"Fake{service.name}", (), methods)()


def _grpc_services() -> list[GrpcService]:
    return [
        GrpcService(
            service.full_name,
            _fake_servicer(service),
            getattr(module_grpc, f"add_{service.name}Servicer_to_server"),
        )
        for service, module_grpc in SERVICES
    ]


async def _serving(security: Security) -> RunningServer:
    running = await start_server(_grpc_services(), "127.0.0.1", 0, security)
    await running.set_serving(True)
    return running


async def _call(
    channel: grpc.aio.Channel, service: ServiceDescriptor, method: MethodDescriptor, token: str | None
) -> grpc.StatusCode:
    """Call `method` with an empty request (and `token` in the metadata); the status it ends with."""
    request = message_factory.GetMessageClass(method.input_type)()
    response = message_factory.GetMessageClass(method.output_type)
    path = f"/{service.full_name}/{method.name}"
    metadata = (("authorization", f"Bearer {token}"),) if token is not None else None
    kind = channel.unary_stream if method.server_streaming else channel.unary_unary
    call = kind(
        path, request_serializer=type(request).SerializeToString, response_deserializer=response.FromString
    )
    try:
        if method.server_streaming:
            async for _ in call(request, metadata=metadata, timeout=10):
                pass
        else:
            await call(request, metadata=metadata, timeout=10)
    except grpc.aio.AioRpcError as error:
        return error.code()
    return grpc.StatusCode.OK


def _run(test: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(test())


def test_the_descriptors_list_every_rpc_of_the_three_services():
    names = {f"{service.name}.{method.name}" for service, method in METHODS}
    assert {"Generator.Generate", "Generator.Import", "Trainer.Train", "Evaluator.Evaluate"} <= names
    assert {"Generator.GetInfo", "Trainer.GetInfo", "Evaluator.GetInfo"} <= names


def test_every_method_refuses_a_missing_or_wrong_token_and_serves_the_right_one():
    async def test() -> None:
        running = await _serving(WITH_TOKEN)
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
                for service, method in METHODS:
                    name = f"{service.name}.{method.name}"
                    assert await _call(channel, service, method, None) == grpc.StatusCode.UNAUTHENTICATED, (
                        name
                    )
                    assert (
                        await _call(channel, service, method, WRONG_TOKEN) == grpc.StatusCode.UNAUTHENTICATED
                    )
                    assert await _call(channel, service, method, TOKEN) == grpc.StatusCode.OK, name
        finally:
            await running.stop(0)

    _run(test)


def test_the_refusal_says_what_is_missing_and_leaks_nothing():
    async def test() -> None:
        running = await _serving(WITH_TOKEN)
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
                stub = trainer_pb2_grpc.TrainerStub(channel)
                with pytest.raises(grpc.aio.AioRpcError) as missing:
                    await stub.GetInfo(common_pb2.GetInfoRequest(), timeout=10)
                wrong_token = (("authorization", f"Bearer {WRONG_TOKEN}"),)
                with pytest.raises(grpc.aio.AioRpcError) as wrong:
                    await stub.GetInfo(common_pb2.GetInfoRequest(), metadata=wrong_token, timeout=10)
                # A method that does not exist is refused alike: no hint of what exists.
                nope = channel.unary_unary("/seal.v1.Trainer/Nope")
                with pytest.raises(grpc.aio.AioRpcError) as unknown:
                    await nope(b"", timeout=10)
        finally:
            await running.stop(0)
        assert missing.value.code() == wrong.value.code() == unknown.value.code()
        assert missing.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert "no bearer token" in missing.value.details()
        assert "wrong bearer token" in wrong.value.details() and TOKEN not in wrong.value.details()

    _run(test)


def test_health_answers_without_a_token():
    async def test() -> None:
        running = await _serving(WITH_TOKEN)
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
                health = health_pb2_grpc.HealthStub(channel)
                for name in ("", *running.service_names):
                    response = await health.Check(health_pb2.HealthCheckRequest(service=name), timeout=10)
                    assert response.status == health_pb2.HealthCheckResponse.SERVING
        finally:
            await running.stop(0)

    _run(test)


def test_open_channel_sends_the_token_on_unary_and_streaming_calls():
    async def test() -> None:
        running = await _serving(WITH_TOKEN)
        try:
            async with open_channel(f"127.0.0.1:{running.port}", WITH_TOKEN) as channel:
                trainer = trainer_pb2_grpc.TrainerStub(channel)
                await trainer.GetInfo(common_pb2.GetInfoRequest(), timeout=10)
                events = [event async for event in trainer.Train(trainer_pb2.TrainRequest(), timeout=10)]
                assert len(events) == 1
            async with open_channel(f"127.0.0.1:{running.port}") as channel:  # no token: refused
                with pytest.raises(grpc.aio.AioRpcError) as refused:
                    await trainer_pb2_grpc.TrainerStub(channel).GetInfo(
                        common_pb2.GetInfoRequest(), timeout=10
                    )
                assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
        finally:
            await running.stop(0)

    _run(test)


@pytest.fixture
def certs(tmp_path) -> LabCertificates:
    return make_certificates(tmp_path / "tls")


async def _get_info(address: str, security: Security) -> grpc.StatusCode:
    async with open_channel(address, security) as channel:
        try:
            await trainer_pb2_grpc.TrainerStub(channel).GetInfo(common_pb2.GetInfoRequest(), timeout=5)
        except grpc.aio.AioRpcError as error:
            return error.code()
    return grpc.StatusCode.OK


def test_tls_handshake_and_call_work_and_a_plaintext_client_is_refused(certs):
    async def test() -> None:
        running = await _serving(certs.server())
        address = f"127.0.0.1:{running.port}"
        try:
            assert await _get_info(address, certs.client()) == grpc.StatusCode.OK
            assert await probe(address, certs.client(token=None))  # the container probe: health over TLS
            assert (
                await _get_info(address, certs.client(token=WRONG_TOKEN)) == grpc.StatusCode.UNAUTHENTICATED
            )
            assert await _get_info(address, WITH_TOKEN) == grpc.StatusCode.UNAVAILABLE  # plaintext
            assert not await probe(address, Security())
            # A server the lab CA did not sign is not trusted.
            assert await _get_info(address, certs.client(foreign=True)) == grpc.StatusCode.UNAVAILABLE
        finally:
            await running.stop(0)

    _run(test)


def test_mutual_tls_refuses_a_client_without_a_certificate(certs):
    async def test() -> None:
        running = await _serving(certs.server(client_auth=True))
        address = f"127.0.0.1:{running.port}"
        try:
            assert await _get_info(address, certs.client(with_cert=True)) == grpc.StatusCode.OK
            assert await _get_info(address, certs.client()) == grpc.StatusCode.UNAVAILABLE
            assert not await probe(address, certs.client(token=None))
        finally:
            await running.stop(0)

    _run(test)
