"""gRPC server reflection: with the token a reflection client (what grpcurl does) lists the seal.v1 service
and resolves a method's request type; without it, reflection is refused like every method but health."""

from __future__ import annotations

import collections

import grpc
import pytest
from google.protobuf.descriptor_pool import DescriptorPool
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase
from pydantic import SecretStr

from seal_lab.security import Security
from tests.grpc_harness import ServerThread
from tests.tls_fixtures import TOKEN
from tests.unit.recording_trainer import RecordingTrainer, trainer_service

_Fields = ("method", "timeout", "metadata", "credentials", "wait_for_ready", "compression")


class _Details(collections.namedtuple("_Details", _Fields), grpc.ClientCallDetails):
    pass


class _SendsToken(grpc.StreamStreamClientInterceptor):
    """Reflection is a stream-stream method; this adds the token as grpcurl's `-H` does."""

    def intercept_stream_stream(self, continuation, details, request_iterator):
        metadata = [*(details.metadata or ()), ("authorization", f"Bearer {TOKEN}")]
        fields = {name: getattr(details, name, None) for name in _Fields}
        return continuation(_Details(**{**fields, "metadata": metadata}), request_iterator)


@pytest.fixture
def server():
    servicer = RecordingTrainer()
    thread = ServerThread(trainer_service(servicer), servicer.load, Security(token=SecretStr(TOKEN))).start()
    yield thread
    thread.stop()


def test_reflection_lists_the_services_and_resolves_a_methods_request_with_the_token(server):
    with grpc.intercept_channel(server.channel(), _SendsToken()) as channel:
        database = ProtoReflectionDescriptorDatabase(channel)
        services = set(database.get_services())
        assert "seal.v1.Trainer" in services and "grpc.health.v1.Health" in services
        method = DescriptorPool(database).FindServiceByName("seal.v1.Trainer").methods_by_name["Train"]
        assert method.input_type.full_name == "seal.v1.TrainRequest"
        assert method.output_type.full_name == "seal.v1.TrainEvent"


def test_reflection_without_the_token_is_refused(server):
    with server.channel() as channel, pytest.raises(grpc.RpcError) as refused:
        ProtoReflectionDescriptorDatabase(channel).get_services()
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
