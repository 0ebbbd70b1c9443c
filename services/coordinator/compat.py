"""Whether the services a run found can serve it: one base model everywhere, the formats it asks for, and
SEAL's judge when the judge is the reward. Checked at every run's start (and resume), before any job."""

from __future__ import annotations

from collections.abc import Sequence

from seal.v1 import common_pb2
from seal_lab.errors import FailedPrecondition

from .schemas import RunConfig


def check_services(
    config: RunConfig,
    generator: common_pb2.ServiceInfo,
    evaluator: common_pb2.ServiceInfo,
    evaluator_address: str,
    trainers: Sequence[tuple[common_pb2.ServiceInfo, str]],
) -> None:
    """Raises FailedPrecondition naming the service and what to change; `trainers` are (info, address)."""
    expected = evaluator.model_fingerprint
    for trainer, address in trainers:
        if trainer.model_fingerprint != expected:
            raise FailedPrecondition(
                f"trainer at {address} serves {trainer.model_name} ({trainer.model_fingerprint}) but the "
                f"evaluator serves {evaluator.model_name} ({expected}): all services must share one base model"
            )
    # One precision for every trainer of a run: a bfloat16 and a float32 trainer would give one run's adapters
    # two recipes, with scores that differ for that alone. The evaluator and generator may differ from the
    # trainers (a bfloat16 GPU trainer beside float32 CPU services is the two-machine split); every service's
    # dtype is in the run's record (`services`).
    precisions = {trainer.dtype for trainer, _ in trainers if trainer.dtype}
    if len(precisions) > 1:
        named = ", ".join(f"{address} {trainer.dtype}" for trainer, address in trainers)
        raise FailedPrecondition(
            f"the trainers train in different precisions ({named}): set one SEAL_MODEL_DTYPE on every trainer"
        )
    if generator.backend == "local" and generator.model_fingerprint != expected:
        raise FailedPrecondition(
            f"generator serves {generator.model_name} ({generator.model_fingerprint}) but the evaluator serves "
            f"{evaluator.model_name} ({expected}): all services must share one base model"
        )
    if config.reward_metric == "judge" and evaluator.runtime.get("judge") != "on":
        raise FailedPrecondition(
            "reward_metric 'judge' needs an evaluator with SEAL's judge, and the evaluator at "
            f"{evaluator_address} has none: set SEAL_EVALUATOR_JUDGE_BASE_URL and "
            "SEAL_EVALUATOR_JUDGE_MODEL there, or choose another reward_metric"
        )
    unknown = [f for f in config.formats if f not in generator.formats]
    if unknown:
        raise FailedPrecondition(
            f"unknown self-edit format(s) {unknown}; the generator knows {list(generator.formats)}"
        )
