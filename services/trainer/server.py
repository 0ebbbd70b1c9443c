"""Trainer servicer: one fresh LoRA adapter per job, progress streamed, results content-addressed."""

from __future__ import annotations

import asyncio
import json
import logging
import tempfile
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from seal.v1 import common_pb2, trainer_pb2, trainer_pb2_grpc
from seal_lab import __version__
from seal_lab.directive import Directive, DirectiveLimits
from seal_lab.errors import InvalidArgument
from seal_lab.logging import bind_context
from seal_lab.lora import ADAPTER_CONFIG, ADAPTER_META, ADAPTER_WEIGHTS, TrainProgressEvent, train_adapter
from seal_lab.service import ModelHost
from seal_lab.store import ObjectStore, json_bytes, sha256_hex, validate_key

from .datasets import parse_dataset
from .settings import TrainerSettings

log = logging.getLogger(__name__)

ADAPTER_PREFIX = "adapters"
JOB_PREFIX = "trainer-jobs"
#: Bumped when training changes in a way that makes old results not comparable (part of the job key).
TRAINING_RECIPE = "lora-adamw-v1"


def limits_from_settings(settings: TrainerSettings) -> DirectiveLimits:
    return DirectiveLimits(
        max_epochs=settings.max_epochs,
        max_lora_rank=settings.max_lora_rank,
        max_max_length=settings.max_max_length,
        max_batch_size=settings.max_batch_size,
    ).with_clamped_default()


@dataclass(frozen=True)
class TrainJob:
    dataset_key: str
    directive: Directive
    seed: int

    def key(self, fingerprint: str, target_modules: str) -> str:
        identity = {
            "dataset_key": self.dataset_key,
            "directive": self.directive.as_dict(),
            "seed": self.seed,
            "base_model_fingerprint": fingerprint,
            "target_modules": target_modules,
            "recipe": TRAINING_RECIPE,
        }
        return f"{JOB_PREFIX}/{sha256_hex(json_bytes(identity))}.json"


def _result_message(record: dict[str, Any], reused: bool) -> trainer_pb2.TrainEvent:
    metrics = record["metrics"]
    return trainer_pb2.TrainEvent(
        result=trainer_pb2.TrainResult(
            adapter_key=record["adapter_key"],
            reused=reused,
            metrics=trainer_pb2.TrainMetrics(
                step_loss=metrics["step_loss"],
                tokens=metrics["tokens"],
                seconds=metrics["seconds"],
                tokens_per_second=metrics["tokens_per_second"],
                steps=metrics["steps"],
                trainable_parameters=metrics["trainable_parameters"],
            ),
        )
    )


def canonical_adapter_config(data: bytes) -> bytes:
    """peft writes `target_modules` from a set, in an order that changes with each process's hash seed; sorted,
    the same adapter always gets the same bytes, hence the same content-addressed key."""
    config = json.loads(data)
    if isinstance(config.get("target_modules"), list):
        config["target_modules"] = sorted(config["target_modules"])
    return json.dumps(config, indent=2, sort_keys=True).encode()


class TrainerServicer(trainer_pb2_grpc.TrainerServicer):
    def __init__(self, store: ObjectStore, host: ModelHost, settings: TrainerSettings) -> None:
        self.store = store
        self.host = host
        self.settings = settings
        self.limits = limits_from_settings(settings)
        modules = settings.target_modules
        self.target_modules: list[str] | str = modules if modules == "all-linear" else modules.split(",")

    async def load(self) -> None:
        await self.host.load()

    async def GetInfo(self, request: common_pb2.GetInfoRequest, context: grpc.aio.ServicerContext):
        return self.host.info(limits=self.limits.to_proto())

    def _validate(self, request: trainer_pb2.TrainRequest) -> TrainJob:
        validate_key(request.dataset_key)
        if not request.HasField("directive"):
            raise InvalidArgument("directive is required")
        directive = Directive.from_proto(request.directive)
        problems = self.limits.violations(directive)
        if problems:
            raise InvalidArgument("directive outside the trainer's limits: " + "; ".join(problems))
        return TrainJob(request.dataset_key, directive, request.seed)

    async def Train(
        self, request: trainer_pb2.TrainRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[trainer_pb2.TrainEvent]:
        job = self._validate(request)
        loaded = self.host.loaded
        job_key = job.key(loaded.fingerprint, self.settings.target_modules)
        with bind_context(job_id=request.job_id):
            if self.store.exists(job_key):
                log.info("job already trained: %s", job_key)
                yield _result_message(self.store.get_json(job_key), reused=True)
                return
            # Read the dataset before queueing, so a bad key or bad data fails fast.
            examples = parse_dataset(
                self.store.get_bytes(job.dataset_key), job.dataset_key, self.settings.max_dataset_examples
            )
            loop = asyncio.get_running_loop()
            queue: asyncio.Queue[TrainProgressEvent] = asyncio.Queue()

            def on_progress(event: TrainProgressEvent) -> None:
                loop.call_soon_threadsafe(queue.put_nowait, event)

            # The job runs to completion even if the caller goes away: its result is recorded under the job
            # key, so a retried call gets it back instead of training again.
            task = asyncio.ensure_future(
                self.host.worker.run(self._train, job, job_key, examples, on_progress)
            )
            while not task.done() or not queue.empty():
                getter = asyncio.ensure_future(queue.get())
                await asyncio.wait({task, getter}, return_when=asyncio.FIRST_COMPLETED)
                if getter.done():
                    event = getter.result()
                    yield trainer_pb2.TrainEvent(
                        progress=trainer_pb2.TrainProgress(
                            step=event.step, total_steps=event.total_steps, epoch=event.epoch, loss=event.loss
                        )
                    )
                else:
                    getter.cancel()
            record, reused = task.result()
            yield _result_message(record, reused)

    def _train(
        self,
        job: TrainJob,
        job_key: str,
        examples: list,
        on_progress: Callable[[TrainProgressEvent], None],
    ) -> tuple[dict[str, Any], bool]:
        """Blocking: runs on the model worker thread, one job at a time."""
        if self.store.exists(job_key):  # an identical job finished while this one waited in the queue
            return self.store.get_json(job_key), True
        loaded = self.host.loaded
        with tempfile.TemporaryDirectory(prefix="seal-train-") as tmp:
            outcome = train_adapter(
                loaded, examples, job.directive, job.seed, Path(tmp), self.target_modules, on_progress
            )
            weights = (Path(tmp) / ADAPTER_WEIGHTS).read_bytes()
            config = canonical_adapter_config((Path(tmp) / ADAPTER_CONFIG).read_bytes())
        metrics = {
            "step_loss": outcome.step_loss,
            "tokens": outcome.tokens,
            "seconds": round(outcome.seconds, 3),
            "tokens_per_second": round(outcome.tokens_per_second, 1),
            "steps": len(outcome.step_loss),
            "trainable_parameters": outcome.trainable_parameters,
            "examples": len(examples),
        }
        adapter_key = f"{ADAPTER_PREFIX}/{sha256_hex(weights + config)}"
        meta = {
            "base_model_name": loaded.name,
            "base_model_fingerprint": loaded.fingerprint,
            "dataset_key": job.dataset_key,
            "directive": job.directive.as_dict(),
            "seed": job.seed,
            "target_modules": self.settings.target_modules,
            "recipe": TRAINING_RECIPE,
            "device": loaded.device,
            "dtype": loaded.dtype,
            "seal_lab_version": __version__,
            "metrics": metrics,
        }
        # Content-addressed and write-once: another job that produced the very same adapter (same training
        # texts, say) keeps the first job's files.
        if not self.store.exists(f"{adapter_key}/{ADAPTER_META}"):
            self.store.put_bytes(f"{adapter_key}/{ADAPTER_WEIGHTS}", weights)
            self.store.put_bytes(f"{adapter_key}/{ADAPTER_CONFIG}", config, "application/json")
            self.store.put_bytes(
                f"{adapter_key}/{ADAPTER_META}", json.dumps(meta, indent=1).encode(), "application/json"
            )
        record = {"adapter_key": adapter_key, "metrics": metrics}
        self.store.put_json(job_key, record)  # written last: its presence means the adapter is complete
        log.info(
            "trained %s: %d steps, %d tokens in %.1fs (%.0f tok/s), final loss %.3f",
            adapter_key,
            metrics["steps"],
            outcome.tokens,
            outcome.seconds,
            outcome.tokens_per_second,
            outcome.step_loss[-1],
        )
        return record, False
