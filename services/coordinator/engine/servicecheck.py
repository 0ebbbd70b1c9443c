"""Whether the services a run found can serve it: one base model everywhere, the formats it asks for, SEAL's
judge when the judge is the reward, and the directives it sets within every trainer's limits. Checked at every
run's start (and resume), before any job; the formats and the directives also at creation (manager.py), against
what the services said last."""

from __future__ import annotations

from collections.abc import Sequence

import grpc

from seal.v1 import common_pb2
from seal_lab.errors import FailedPrecondition, InvalidArgument
from seal_lab.formats.directive import DirectiveLimits

from ..run.schemas import RunConfig
from .clients import TrainerPool
from .convert import directive_limits


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
    for trainer, address in trainers:
        if not trainer.HasField("limits"):  # a trainer that publishes none checks each directive itself
            continue
        problems = directive_problems(config, directive_limits(trainer.limits))
        if problems:
            raise FailedPrecondition(
                f"the trainer at {address} does not allow the directives this run sets: {'; '.join(problems)}"
                " (a directive the run sets is refused, not clamped: start a run with values inside them)"
            )
    sent = config.strategy_texts  # strategies the run sends as files
    unknown = [f for f in config.formats if f not in generator.formats and f not in sent]
    if unknown:
        raise FailedPrecondition(
            f"unknown self-edit format(s) {unknown}; the generator knows {list(generator.formats)}"
        )


def directive_problems(config: RunConfig, limits: DirectiveLimits) -> list[str]:
    """Each directive value the run's config sets that a trainer's `limits` do not allow, naming the field,
    the value and the limits (DirectiveLimits.check): every field of each `directive_search` entry and of
    `heldout_directive`, and the `policy_directive` fields the request set to other values than their defaults, when the run has rounds.
    Refused rather than clamped, so that what the results say was asked is what trained. A policy directive
    field at its default is clamped to the limits (a trainer with `max_max_length 128` trains the default
    1024 as 128), whether the request named it or not: a run's recorded config, which names every field,
    can be sent again as it is. The policy update's record keeps the directive used."""
    problems = []
    for index, override in enumerate(config.directive_search):
        problems += limits.check(override.fields_set(), f"config.directive_search[{index}].")
    if config.heldout_directive is not None:
        problems += limits.check(config.heldout_directive.fields_set(), "config.heldout_directive.")
    if config.rounds:
        policy = config.policy_directive
        defaults = type(policy).model_fields
        given = {
            name: getattr(policy, name)
            for name in policy.model_fields_set
            if getattr(policy, name) != defaults[name].default
        }
        problems += limits.check(given, "config.policy_directive.")
    return problems


#: The longest a GetInfo asked while a caller waits (a run's creation, `GET /v1/services`) may take, however long
#: `info_timeout_seconds` (a run's start, which may wait for a model to load) is.
QUICK_INFO_SECONDS = 5.0


def quick_info_timeout(info_timeout: float) -> float:
    """The deadline of a GetInfo a caller waits for: `info_timeout`, at most `QUICK_INFO_SECONDS`."""
    return min(info_timeout, QUICK_INFO_SECONDS)


class TrainerLimits:
    """The directive limits this coordinator knows: those a trainer published at the last run's start (the
    defaults before any), which every run's trainings are planned with (budget.py) and its config's
    directives are checked against at creation."""

    def __init__(self, info_timeout: float) -> None:
        self.info_timeout = quick_info_timeout(info_timeout)
        self.limits = DirectiveLimits().with_clamped_default()
        #: Whether `limits` came from a trainer (else they are the defaults, and a creation asks one).
        self.published = False

    def publish(self, limits: DirectiveLimits) -> None:
        self.limits, self.published = limits, True

    async def check_creation(self, config: RunConfig, trainers: TrainerPool) -> None:
        """InvalidArgument (422) for a directive the config sets outside the trainer's limits: those known,
        or, before any trainer published them, those a trainer there now tells (asked once, not waited for
        nor retried: a creation must not wait for a trainer). With none to ask, the run's start checks them
        (`check_services`) and the run fails saying the same."""
        if not self.published:
            for endpoint in list(trainers.endpoints):
                try:
                    info = await endpoint.stub.GetInfo(common_pb2.GetInfoRequest(), timeout=self.info_timeout)
                except grpc.aio.AioRpcError:
                    continue
                if info.HasField("limits"):
                    self.publish(directive_limits(info.limits))
                    break
        problems = directive_problems(config, self.limits) if self.published else []
        if problems:
            raise InvalidArgument(
                f"outside the trainer's directive limits: {'; '.join(problems)} (a directive the run sets is "
                "refused, not clamped)"
            )
