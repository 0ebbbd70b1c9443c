"""A gRPC service's metrics endpoint: it counts each call by method and status code, the tokens a training
job reports, the queue, and the process's memory; with a token it answers 401 without it."""

from __future__ import annotations

import asyncio
import socket
import ssl

import grpc
import httpx
import pytest
from pydantic import SecretStr, ValidationError

from seal.v1 import trainer_pb2, trainer_pb2_grpc
from seal_lab.rpc.client import open_channel
from seal_lab.security import Security
from seal_lab.serve.metrics import ServiceMetrics
from seal_lab.serve.metrics_http import start_metrics_server
from seal_lab.serve.server import start_server
from services.generator.settings import GeneratorSettings
from services.trainer.settings import TrainerSettings
from tests.tls_fixtures import TOKEN, make_certificates
from tests.unit.recording_trainer import RecordingTrainer, trainer_service

SECURITY = Security(token=SecretStr(TOKEN))


def _scrape(port: int, token: str | None = TOKEN, path: str = "/metrics") -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.get(f"http://127.0.0.1:{port}{path}", headers=headers, timeout=10)


def test_the_metrics_endpoint_counts_calls_tokens_and_the_queue_behind_the_token():
    metrics = ServiceMetrics()
    endpoint = start_metrics_server(metrics.registry, "127.0.0.1", 0, SECURITY)

    async def calls() -> None:
        running = await start_server([trainer_service(RecordingTrainer())], "127.0.0.1", 0, SECURITY, metrics)
        try:
            async with open_channel(f"127.0.0.1:{running.port}", SECURITY) as channel:
                stub = trainer_pb2_grpc.TrainerStub(channel)
                _ = [e async for e in stub.Train(trainer_pb2.TrainRequest(dataset_key="good"), timeout=10)]
                with pytest.raises(grpc.aio.AioRpcError) as refused:
                    _ = [e async for e in stub.Train(trainer_pb2.TrainRequest(dataset_key="bad"), timeout=10)]
                assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        finally:
            await running.stop(0)

    try:
        before = _scrape(endpoint.port).text
        assert 'seal_grpc_calls_total{code="OK",method="/seal.v1.Trainer/Train"}' not in before
        asyncio.run(calls())
        assert _scrape(endpoint.port, token=None).status_code == 401
        assert _scrape(endpoint.port, token="wrong-token-0123456789").status_code == 401
        assert _scrape(endpoint.port, path="/other").status_code == 404
        response = _scrape(endpoint.port)
    finally:
        endpoint.stop()
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert 'seal_grpc_calls_total{code="OK",method="/seal.v1.Trainer/Train"} 1.0' in text
    assert 'seal_grpc_calls_total{code="INVALID_ARGUMENT",method="/seal.v1.Trainer/Train"} 1.0' in text
    assert 'seal_tokens_total{kind="trained"} 100.0' in text
    assert 'seal_tokens_per_second{kind="trained"} 50.0' in text
    assert 'seal_admitted_calls{what="training jobs"} 0.0' in text
    assert 'seal_grpc_calls_in_progress{method="/seal.v1.Trainer/Train"} 0.0' in text
    assert "process_resident_memory_bytes" in text
    assert "Health" not in text  # probes are not counted


def test_a_service_serving_tls_serves_its_metrics_over_tls(tmp_path):
    certificates = make_certificates(tmp_path)
    endpoint = start_metrics_server(ServiceMetrics().registry, "127.0.0.1", 0, certificates.server())
    try:
        url = f"https://127.0.0.1:{endpoint.port}/metrics"
        verify = ssl.create_default_context(cafile=certificates.ca)
        silent = socket.create_connection(("127.0.0.1", endpoint.port))  # connects, never shakes hands
        response = httpx.get(url, headers={"Authorization": f"Bearer {TOKEN}"}, verify=verify, timeout=10)
        assert response.status_code == 200 and "process_resident_memory_bytes" in response.text
        with pytest.raises(httpx.HTTPError):  # plaintext is not answered
            httpx.get(url.replace("https", "http"), timeout=5)
        silent.close()
    finally:
        endpoint.stop()


def test_each_service_reads_its_metrics_port_which_must_differ_from_its_grpc_port(monkeypatch):
    monkeypatch.setenv("SEAL_TRAINER_METRICS_PORT", "9102")
    assert TrainerSettings().metrics_port == 9102
    assert GeneratorSettings().metrics_port == 0  # off unless set
    monkeypatch.setenv("SEAL_TRAINER_PORT", "9102")
    with pytest.raises(ValidationError, match="metrics need a port of their own"):
        TrainerSettings()
