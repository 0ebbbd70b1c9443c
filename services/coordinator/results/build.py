"""A run's results from its job records: the training rounds (rounds.py), the held-out conditions
(heldout.py), and across them what worked (reward by format and by directive) and what the adapters forgot."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from typing import Any

from seal_lab.formats.passages import Passage
from seal_lab.scoring.stats import describe

from ..run.jobs import JobName, trial_suffix
from ..run.records import FailedRecord, JobRecord, PolicyRecord, job_records
from ..run.result_schemas import (
    GainPoint,
    HeldoutResults,
    HeldoutRoundMean,
    ResultsSummary,
    RoundResult,
    RunResults,
    SearchTrial,
    WhatWorked,
)
from ..run.schemas import RunConfig
from ..run.split import Split
from .heldout import heldout_results
from .readout import mean
from .rounds import round_passages, round_summary

#: Buckets for "which directives worked": (label, upper bound exclusive) per field.
DIRECTIVE_BUCKETS: dict[str, list[tuple[str, float]]] = {
    "epochs": [("1-2", 3), ("3-5", 6), ("6+", float("inf"))],
    "learning_rate": [
        ("<1e-3", 1e-3),
        ("1e-3 to <3e-3", 3e-3),
        ("3e-3 to <1e-2", 1e-2),
        (">=1e-2", float("inf")),
    ],
    "lora_rank": [("1-8", 9), ("9-16", 17), ("17+", float("inf"))],
}


def bucket(field: str, value: float) -> str:
    for label, upper in DIRECTIVE_BUCKETS[field]:
        if value < upper:
            return label
    raise AssertionError("the last bucket is unbounded")


def _what_worked(rounds: list[RoundResult], config: RunConfig) -> WhatWorked:
    """Across every round: reward by format, by directive bucket, and what directive search found."""
    by_format: dict[str, list[float]] = defaultdict(list)
    by_bucket: dict[str, dict[str, list[float]]] = {f: defaultdict(list) for f in DIRECTIVE_BUCKETS}
    by_trial: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for round_result in rounds:
        for passage in round_result.passages:
            for edit in passage.self_edits:
                if edit.reward is not None:
                    by_format[edit.format].append(edit.reward)
                for trial in edit.trials:
                    if trial.reward is None:
                        continue
                    directive = trial.directive.values()
                    for name in DIRECTIVE_BUCKETS:
                        value = directive.get(name)
                        if value is not None:
                            by_bucket[name][bucket(name, value)].append(trial.reward)
                    if trial.trial and edit.reward is not None:
                        by_trial[trial.trial].append((trial.reward, edit.reward))
    search = []
    for number, override in enumerate(config.directive_search, start=1):
        pairs = by_trial.get(trial_suffix(number), [])
        search.append(
            SearchTrial(
                trial=trial_suffix(number),
                override=override.fields_set(),
                n=len(pairs),
                mean_reward=mean([a for a, _ in pairs]),
                own_mean_reward=mean([b for _, b in pairs]),
                better_than_own=sum(1 for a, b in pairs if a > b),
                worse_than_own=sum(1 for a, b in pairs if a < b),
            )
        )
    return WhatWorked.model_validate(
        {
            "reward_by_format": {k: describe(v, config.seed) for k, v in sorted(by_format.items())},
            "reward_by_directive_bucket": {
                name: {
                    label: describe(by_bucket[name][label], config.seed)
                    for label, _ in DIRECTIVE_BUCKETS[name]
                    if by_bucket[name][label]
                }
                for name in DIRECTIVE_BUCKETS
            },
            "directive_search": search,
        }
    )


def _gain_vs_retention(rounds: list[RoundResult], heldout: HeldoutResults | None) -> list[GainPoint]:
    """One point per adapter with both a gain and a retention score."""
    points = []
    for round_result in rounds:
        for passage in round_result.passages:
            for edit in passage.self_edits:
                for trial in edit.trials:
                    if trial.reward is not None and trial.retention is not None:
                        points.append(
                            GainPoint(
                                group=f"round {round_result.round}",
                                gain=trial.reward,
                                retention=trial.retention,
                            )
                        )
    if heldout:
        labels = {c.condition: c.short_label.removeprefix("passage + ") for c in heldout.conditions}
        for held in heldout.passages:
            scores = held.scores
            for condition, kept in held.retention.items():
                if condition != "base" and condition in scores and "base" in scores:
                    gain = round(scores[condition] - scores["base"], 4)  # type: ignore[operator]
                    points.append(
                        GainPoint(
                            group=f"held-out: {labels.get(condition, condition)}", gain=gain, retention=kept
                        )
                    )
    return points


def build_results(
    passages: list[Passage],
    jobs: Mapping[str, JobRecord | dict[str, Any]],
    config: RunConfig,
    split: Split | None = None,
    teachers: Mapping[str, object] | None = None,
) -> RunResults:
    """Every result of a run from its job records (JSON ones are parsed: run/records.py); `split` None: every
    passage is a training passage; `teachers` is read for its names only."""
    jobs = job_records(jobs)
    split = split or Split(train=tuple(range(len(passages))))
    train, held = split.train, split.heldout
    rounds = []
    for round_index in range(max(1, config.rounds)):
        passage_results = round_passages(passages, train, jobs, config, round_index)
        summary = round_summary(passage_results, train, jobs, config, round_index)
        policy = jobs.get(str(JobName.policy(round_index))) if config.rounds else None
        if isinstance(policy, PolicyRecord) and not policy.skipped and not policy.reused:
            spent = policy.metrics.seconds if policy.metrics and policy.metrics.seconds is not None else 0.0
            summary.seconds["policy_train"] = round(spent, 1)
        policy_keys = {p.policy_adapter_key for p in passage_results if p.self_edits}
        rounds.append(
            RoundResult(
                round=round_index,
                policy_adapter_key=policy_keys.pop() if len(policy_keys) == 1 else sorted(policy_keys),
                summary=summary,
                # With the directive it trained with: the config's policy_directive, its defaulted fields
                # clamped to the trainer's limits.
                policy_update=policy if isinstance(policy, PolicyRecord | FailedRecord) else None,
                passages=passage_results,
            )
        )
    heldout = heldout_results(passages, held, jobs, config, list(teachers or {})) if held else None
    summary = ResultsSummary.model_validate(
        {
            **rounds[0].summary.model_dump(),
            "rounds": config.rounds,
            "training_passages": len(train),
            "heldout_passages": len(held),
        }
    )
    if heldout:
        summary.heldout_by_round = [
            HeldoutRoundMean(round=r.round, mean=r.mean, stderr=r.stderr, n=r.n) for r in heldout.by_round
        ]
    return RunResults(
        summary=summary,
        passages=rounds[0].passages,
        rounds=rounds,
        heldout=heldout,
        what_worked=_what_worked(rounds, config),
        gain_vs_retention=_gain_vs_retention(rounds, heldout),
    )
