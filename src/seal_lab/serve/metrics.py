"""Prometheus metrics of a gRPC service, in a registry of its own (tests start several servers in one process).

- `seal_grpc_calls_total{method,code}`, `seal_grpc_call_seconds{method}`, `seal_grpc_calls_in_progress`:
  every `seal.v1` call, counted by `seal_lab.serve.server` when it is answered (health is not counted);
- `seal_admitted_calls{what}` / `seal_busy_refusals_total{what}`: a servicer's `CallGate` (its queue);
- `seal_tokens_total{kind}`, `seal_token_seconds_total{kind}`, `seal_tokens_per_second{kind}`: tokens trained
  (trainer, `kind="trained"`) or generated (generator, `kind="generated"`), read from the answers, so no
  servicer reports them; `rate(seal_tokens_total) / rate(seal_token_seconds_total)` is the throughput;
- `process_*` (resident memory, CPU) from prometheus_client, and `seal_cuda_memory_*_bytes{device}` where torch
  has initialised CUDA in this process (this module never imports torch).

`seal_lab.serve.metrics_http` serves the registry.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from typing import Any

import grpc
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from seal_lab.serve.callgate import CallGate

#: Seconds: from a quick GetInfo to an hour-long training job.
CALL_BUCKETS = (0.01, 0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600)


def _trained(message: Any) -> tuple[float, float] | None:
    if not message.HasField("result") or message.result.reused:  # progress, or nothing trained
        return None
    return message.result.metrics.tokens, message.result.metrics.seconds


def _generated(message: Any) -> tuple[float, float] | None:
    return sum(edit.generated_tokens for edit in message.self_edits), message.seconds


#: Method -> (kind, reader of (tokens, seconds) from one of its answers, None when it holds none).
TOKEN_READERS: dict[str, tuple[str, Callable[[Any], tuple[float, float] | None]]] = {
    "/seal.v1.Trainer/Train": ("trained", _trained),
    "/seal.v1.Generator/Generate": ("generated", _generated),
}


class ServiceMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        registry = self.registry
        ProcessCollector(registry=registry)
        self.calls = Counter(
            "seal_grpc_calls",
            "gRPC calls answered, by method and status code",
            ["method", "code"],
            registry=registry,
        )
        self.call_seconds = Histogram(
            "seal_grpc_call_seconds", "Seconds from a call's start to its answer", ["method"],
            buckets=CALL_BUCKETS, registry=registry,
        )  # fmt: skip
        self.in_progress = Gauge(
            "seal_grpc_calls_in_progress", "Calls started and not yet answered", ["method"], registry=registry
        )
        self.tokens = Counter("seal_tokens", "Tokens trained or generated", ["kind"], registry=registry)
        self.token_seconds = Counter(
            "seal_token_seconds", "Seconds spent training or generating them", ["kind"], registry=registry
        )
        self.tokens_per_second = Gauge(
            "seal_tokens_per_second", "Tokens per second of the last job", ["kind"], registry=registry
        )
        self.gates: list[CallGate] = []
        registry.register(_GateCollector(self.gates))
        registry.register(_CudaMemoryCollector())

    def watch_gate(self, gate: CallGate) -> None:
        """Export the calls `gate` has admitted (in progress or queued) and how many it refused."""
        self.gates.append(gate)

    def started(self, method: str) -> None:
        self.in_progress.labels(method).inc()

    def finished(self, method: str, code: grpc.StatusCode, seconds: float) -> None:
        self.in_progress.labels(method).dec()
        self.calls.labels(method, code.name).inc()
        self.call_seconds.labels(method).observe(seconds)

    def answered(self, method: str, message: Any) -> None:
        """One answer (or streamed message) of `method`: count the tokens it reports."""
        reader = TOKEN_READERS.get(method)
        if reader is None:
            return
        kind, read = reader
        counted = read(message)
        if counted is None:
            return
        tokens, seconds = counted
        self.tokens.labels(kind).inc(tokens)
        self.token_seconds.labels(kind).inc(seconds)
        if seconds > 0:
            self.tokens_per_second.labels(kind).set(tokens / seconds)


class _GateCollector(Collector):
    def __init__(self, gates: list[CallGate]) -> None:
        self.gates = gates

    def collect(self) -> Iterator[Metric]:
        admitted = GaugeMetricFamily(
            "seal_admitted_calls", "Calls in progress or queued for the model", labels=["what"]
        )
        refused = CounterMetricFamily(
            "seal_busy_refusals",
            "Calls refused busy (RESOURCE_EXHAUSTED): the queue was full",
            labels=["what"],
        )
        for gate in self.gates:
            admitted.add_metric([gate.what], gate.admitted)
            refused.add_metric([gate.what], gate.refused)
        yield admitted
        yield refused


class _CudaMemoryCollector(Collector):
    """GPU memory per device, when torch is loaded and has initialised CUDA here (never imports torch)."""

    def collect(self) -> Iterator[Metric]:
        torch = sys.modules.get("torch")
        if torch is None or not torch.cuda.is_initialized():
            return
        allocated = GaugeMetricFamily(
            "seal_cuda_memory_allocated_bytes", "GPU memory held by tensors", labels=["device"]
        )
        reserved = GaugeMetricFamily(
            "seal_cuda_memory_reserved_bytes", "GPU memory reserved by torch's allocator", labels=["device"]
        )
        for index in range(torch.cuda.device_count()):
            allocated.add_metric([str(index)], torch.cuda.memory_allocated(index))
            reserved.add_metric([str(index)], torch.cuda.memory_reserved(index))
        yield allocated
        yield reserved
