"""The services the coordinator sees now, for `GET /v1/services`: the generator, the evaluator and every trainer
in the pool, each asked GetInfo at once with a short deadline (one that is down or stuck holds nobody up),
with what the engine knows of their load."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import grpc

from seal.v1 import common_pb2

from ..run.records import ServiceRecord
from ..run.services import ServicesStatus, ServiceStatus
from ..settings import CoordinatorSettings
from . import convert
from .clients import ServiceClients, TrainerEndpoint
from .servicecheck import quick_info_timeout

#: The most of an error's message a status shows.
MAX_REASON_CHARS = 300
#: The fields of a service's GetInfo record that its status shows.
_INFO_FIELDS = {"model_name", "model_fingerprint", "version", "device", "dtype", "backend", "max_group_size"}


def reason(exc: BaseException) -> str:
    """An error in one line, without its stack: a gRPC status's code and details, else the exception's type
    and message."""
    if isinstance(exc, grpc.aio.AioRpcError):
        text = f"{exc.code().name}: {exc.details() or ''}"
    elif isinstance(exc, TimeoutError):
        text = "no answer before the deadline"
    else:
        text = f"{type(exc).__name__}: {exc}"
    line = " ".join(text.split())
    return line if len(line) <= MAX_REASON_CHARS else line[: MAX_REASON_CHARS - 1] + "…"


async def _ask(stub: Any, timeout: float) -> common_pb2.ServiceInfo | BaseException:
    """The service's GetInfo, or what kept it from answering within `timeout` (the gRPC deadline, and a
    backstop a second later in case the call does not keep it)."""
    try:
        async with asyncio.timeout(timeout + 1.0):
            return await stub.GetInfo(common_pb2.GetInfoRequest(), timeout=timeout)
    except Exception as exc:  # any failure of one service is its status, never the whole page's
        return exc


def _status(
    service: str,
    address: str,
    answer: common_pb2.ServiceInfo | BaseException,
    **load: Any,
) -> ServiceStatus:
    if isinstance(answer, BaseException):
        return ServiceStatus(service=service, address=address, reachable=False, error=reason(answer), **load)
    record: ServiceRecord = (convert.trainer_record if service == "trainer" else convert.service_record)(
        answer, address
    )
    return ServiceStatus(
        service=service, address=address, reachable=True, **record.model_dump(include=_INFO_FIELDS), **load
    )


async def survey(
    clients: ServiceClients, settings: CoordinatorSettings, pending: Mapping[str, int]
) -> ServicesStatus:
    """Every service's status now. `pending`: service calls started and not finished, by service
    (callstats.CallStats.pending)."""
    timeout = quick_info_timeout(settings.info_timeout_seconds)
    pool = clients.trainers
    trainers: list[tuple[TrainerEndpoint, bool]] = [(e, False) for e in pool.endpoints]
    trainers += [(e, True) for e in pool.draining]
    generator, evaluator, *answers = await asyncio.gather(
        _ask(clients.generator, timeout),
        _ask(clients.evaluator, timeout),
        *(_ask(endpoint.stub, timeout) for endpoint, _ in trainers),
    )
    single = {
        service: _status(
            service,
            getattr(settings, f"{service}_address"),
            answer,
            capacity=getattr(settings, f"{service}_concurrency"),
            pending=pending.get(service, 0),
        )
        for service, answer in (("generator", generator), ("evaluator", evaluator))
    }
    return ServicesStatus(
        generator=single["generator"],
        evaluator=single["evaluator"],
        trainers=[
            _status(
                "trainer",
                endpoint.address,
                answer,
                capacity=endpoint.capacity,
                in_flight=endpoint.in_flight,
                load=endpoint.load,
                cooling_down=pool.cooling_down(endpoint),
                draining=draining,
            )
            for (endpoint, draining), answer in zip(trainers, answers, strict=True)
        ],
        trainers_missing=None if trainers else pool.missing(),
        pending_training_jobs=pending.get("trainer", 0),
        info_timeout_seconds=timeout,
    )
