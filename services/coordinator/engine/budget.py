"""How much work a run may plan, alone and together with this coordinator's other unfinished runs.

A run's plan is counted before any work (at creation, and again for the coordinator's total at a resume): its
jobs (`RunState.jobs_total`) and an upper bound on the tokens its trainings process. A training processes at
most `steps x batch_size x max_length` tokens (steps mode) or `epochs x` its dataset's tokens (epochs mode),
never more than its dataset per step; with a token budget, the budget and one more sequence (the last example
may pass it). A dataset's tokens are bounded by its text: the passage (title and
context, at most a token per byte), a self-edit of at most `max_new_tokens` tokens cut into texts of three
words or more, each with the title in front (a teacher's completion: its bytes). Where a directive is known
the bound uses it (held-out conditions on the trainer's default directive, the policy directive); where a
model writes it, the worst one the trainer's limits allow, in either mode. The limits are the last ones a
trainer published to this coordinator, the trainer's defaults before the first run.

Beyond a per-run budget a run is refused with 422, naming the setting and the numbers; beyond the
coordinator's budget for its unfinished runs with 429 (no Retry-After: when runs finish is not known).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass

import grpc

from seal_lab.errors import InvalidArgument, SealError
from seal_lab.formats.directive import Directive, DirectiveLimits, epochs_mean_epochs
from seal_lab.formats.passages import Passage

from ..run.continual import stream_orders
from ..settings import CoordinatorSettings
from .state import RunState

#: A training text holds at least three words (the formats drop shorter lines), so at least three tokens.
MIN_TEXT_TOKENS = 3
#: ... and, in a teacher's completion, at least five bytes ("a b c").
MIN_TEXT_BYTES = 5
#: Policy examples per winning self-edit: the self-edit, then its directive (services/generator/backends.py).
POLICY_EXAMPLES_PER_WINNER = 2


class BudgetExhausted(SealError):
    """This coordinator's unfinished runs already plan as much work as it takes on at once."""

    grpc_code = grpc.StatusCode.RESOURCE_EXHAUSTED
    http_status = 429


@dataclass(frozen=True)
class RunPlan:
    jobs: int = 0
    trainings: int = 0
    train_tokens: int = 0

    def __add__(self, other: RunPlan) -> RunPlan:
        return RunPlan(*(a + b for a, b in zip(asdict(self).values(), asdict(other).values(), strict=True)))


def training_tokens(directive: Directive, data_tokens: int) -> int:
    """The most tokens one training with `directive` processes on a dataset of `data_tokens` tokens."""
    if directive.tokens > 0:  # the example that reaches the budget is taken whole
        return directive.tokens - 1 + min(directive.max_length, data_tokens)
    if directive.steps > 0:
        return directive.steps * min(directive.batch_size * directive.max_length, data_tokens)
    return directive.epochs * data_tokens


def worst_training_tokens(
    limits: DirectiveLimits, data_tokens: int, known: dict[str, float | int] | None = None
) -> int:
    """The bound for a directive of which only the fields `known` are given (a directive-search trial), or
    none (one a model writes): the others at the worst the limits allow, in whichever mode costs more."""
    known = epochs_mean_epochs(known or {})
    worst = {
        **asdict(limits.default),
        "epochs": limits.max_epochs,
        "batch_size": limits.max_batch_size,
        "max_length": limits.max_max_length,
        "steps": limits.max_steps,
        "tokens": 0,
    }
    modes = [worst] if "steps" in known else [worst, {**worst, "steps": 0}]
    if "tokens" not in known:  # a token budget overrides either
        modes.append({**worst, "tokens": limits.max_tokens})
    return max(training_tokens(limits.clamp(Directive(**{**mode, **known})), data_tokens) for mode in modes)


def _bytes(text: str) -> int:
    return len(text.encode())


def passage_tokens(passage: Passage) -> int:
    """The passage as a training text ("title\\ncontext" and EOS)."""
    return _bytes(passage.title) + 1 + _bytes(passage.context) + 1


def written_tokens(passage: Passage, text_tokens: int, texts: int) -> int:
    """A self-edit's training texts: `text_tokens` of text in at most `texts` texts, each "title\\ntext" + EOS."""
    return text_tokens + texts * (_bytes(passage.title) + 2)


def plan_run(run: RunState, limits: DirectiveLimits) -> RunPlan:
    """Jobs, trainings and the bound on their tokens for `run` under a trainer's `limits`."""
    config = run.config
    texts = config.max_new_tokens // MIN_TEXT_TOKENS + 1

    def edit_tokens(passage: Passage) -> int:
        # Cutting the self-edit into texts may split a token in two: one more token per text.
        written = written_tokens(passage, config.max_new_tokens + texts, texts)
        return passage_tokens(passage) * config.include_passage + written

    def bound(source: str, data: int, override: dict[str, float | int] | None = None) -> int:
        """One training: on the trainer's default directive, or on the worst one a model may write (`source`
        "generated": `self_edit_directive`, `conditions_directive`), with `override`'s fields over it."""
        if source == "generated":
            return worst_training_tokens(limits, data, override)
        return training_tokens(limits.overridden(limits.default, override or {}), data)

    def self_edit_training(data: int, override: dict[str, float | int] | None = None) -> int:
        return bound(config.self_edit_directive, data, override)

    trainings = tokens = 0
    if config.mode == "continual":  # each step trains its candidates, the replayed examples beside its own
        candidates = 1 if config.continual_pick == "first" else config.k
        replayed = config.continual_replay * (config.max_new_tokens + texts)
        update = config.continual_update.fields_set() if config.continual_update else None
        for order in stream_orders(config, run.passages):
            for index in order:
                data = edit_tokens(run.passages[index]) + replayed
                trainings += candidates
                tokens += candidates * self_edit_training(data, update)
        return RunPlan(run.jobs_total, trainings, tokens)
    per_self_edit = config.reward_seeds
    for index in run.split.train:
        data = edit_tokens(run.passages[index])
        own = self_edit_training(data)
        trials = sum(self_edit_training(data, o.fields_set()) for o in config.directive_search)
        edits = max(1, config.rounds) * len(config.formats) * config.k
        trainings += edits * per_self_edit * (1 + len(config.directive_search))
        tokens += edits * per_self_edit * (own + trials)

    override = config.heldout_directive.fields_set() if config.heldout_directive else {}

    def condition(data: int) -> int:
        return bound(config.conditions_directive, data, override)

    for index in run.split.heldout:
        passage = run.passages[index]
        completions = [c[passage.passage_id] for _, c in run.teachers.values() if passage.passage_id in c]
        datas = [passage_tokens(passage)] + [edit_tokens(passage)] * (config.rounds + 1)
        datas += [
            passage_tokens(passage) + written_tokens(passage, _bytes(c), _bytes(c) // MIN_TEXT_BYTES + 1)
            for c in completions
        ]
        trainings += len(datas)
        tokens += sum(condition(data) for data in datas)

    policy = limits.clamp(Directive(**config.policy_directive.model_dump()))
    policy_data = len(run.split.train) * POLICY_EXAMPLES_PER_WINNER * policy.max_length
    trainings += config.rounds
    tokens += config.rounds * training_tokens(policy, policy_data)
    return RunPlan(run.jobs_total, trainings, tokens)


class Budget:
    """The coordinator's budgets (settings `SEAL_COORDINATOR_MAX_*`), checked before a run does any work."""

    def __init__(self, settings: CoordinatorSettings) -> None:
        self.settings = settings

    def check(
        self, run: RunState, executing: Iterable[RunState], limits: DirectiveLimits, new: bool = True
    ) -> None:
        """A `new` run against the per-run budget, and any run (a resumed one too) against the coordinator's
        budget with the runs `executing` here that have not finished."""
        plan = plan_run(run, limits)
        if new:
            self.check_run(plan)
        self.check_active(plan, [plan_run(other, limits) for other in executing if not other.finished])

    def check_run(self, plan: RunPlan) -> None:
        """422 when one run plans more than a run may."""
        settings = self.settings
        if plan.jobs > settings.max_jobs_per_run:
            raise InvalidArgument(
                f"this run plans {plan.jobs:,} jobs; SEAL_COORDINATOR_MAX_JOBS_PER_RUN is "
                f"{settings.max_jobs_per_run:,} (fewer passages, a smaller k, fewer reward_seeds, rounds or "
                "directive_search trials plan fewer)"
            )
        if plan.train_tokens > settings.max_train_tokens_per_run:
            raise InvalidArgument(
                f"this run's {plan.trainings:,} trainings may process up to {plan.train_tokens:,} tokens (bounded "
                "by the passages' length, max_new_tokens and the trainer's directive limits); "
                f"SEAL_COORDINATOR_MAX_TRAIN_TOKENS_PER_RUN is {settings.max_train_tokens_per_run:,}"
            )

    def check_active(self, plan: RunPlan, active: Iterable[RunPlan]) -> None:
        """429 when this run's plan and those of the coordinator's unfinished runs exceed its budget."""
        plans = list(active)
        total = sum(plans, RunPlan())
        limits = self.settings
        _within(len(plans), "jobs", total.jobs, plan.jobs, "MAX_ACTIVE_JOBS", limits.max_active_jobs)
        _within(
            len(plans),
            "training tokens",
            total.train_tokens,
            plan.train_tokens,
            "MAX_ACTIVE_TRAIN_TOKENS",
            limits.max_active_train_tokens,
        )


def _within(runs: int, unit: str, running: int, planned: int, setting: str, limit: int) -> None:
    if running + planned > limit:
        raise BudgetExhausted(
            f"this coordinator's {runs} unfinished run(s) plan {running:,} {unit}; with this run's {planned:,} "
            f"that is over SEAL_COORDINATOR_{setting} ({limit:,}). Try again when a run has finished, or cancel "
            "one (POST /v1/runs/{id}/cancel)"
        )
