"""Results of the training rounds: per passage, the baseline, every self-edit's reward (with its directive
trials) and the best one; per round, a summary (rewards by format and directive, time spent, forgetting)."""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Sequence

from seal_lab.formats.passages import Passage, retention_set_size
from seal_lab.scoring.stats import variance_components

from ..run.jobs import JobName, trial_suffix
from ..run.records import BestSelfEdit, Scores
from ..run.result_schemas import (
    PassageResult,
    QuestionResult,
    RoundSummary,
    SelfEditResult,
    Trial,
    VarianceComponents,
)
from ..run.schemas import RunConfig
from .readout import (
    Jobs,
    error_of,
    errors_of,
    evaluations_of,
    mean,
    metric_of,
    seconds_of,
    self_edits_of,
    trained_directive,
    trained_of,
)

DIRECTIVE_FIELDS = ("epochs", "learning_rate", "lora_rank", "lora_alpha", "batch_size", "steps")


def retention_penalty(config: RunConfig, base_retention: float | None, kept: float | None) -> float:
    """`retention_lambda` times what an adapter lost on the retention sample against the base model (floored
    at 0); 0 when it is off or the retention scores are missing. Subtracted from the reward: the ReST-EM
    winners, and so the policy, favour self-edits that teach without erasing."""
    if not config.retention_lambda or base_retention is None or kept is None:
        return 0.0
    return config.retention_lambda * max(0.0, base_retention - kept)


def round_passages(
    passages: list[Passage],
    indices: Sequence[int],
    jobs: Jobs,
    config: RunConfig,
    round_index: int,
) -> list[PassageResult]:
    """Per training passage of one round: baseline, each self-edit with its rewards, and the best."""
    metric = config.reward_metric
    results = []
    for index in indices:
        passage = passages[index]
        baseline = evaluations_of(jobs, JobName.baseline(index)).get("")
        evaluations = evaluations_of(jobs, JobName.evaluate(index, round_index))
        retention = evaluations_of(jobs, JobName.retention(index, round_index))
        base_retention = metric_of(retention, "", metric)
        errors = errors_of(jobs, lambda job, i=index: job.index == i and job.round == round_index)
        edits = []
        policy_key = ""
        for edit_format in config.formats:
            generated = self_edits_of(jobs, JobName.generate(index, round_index, edit_format))
            if generated is None:
                continue
            if generated.policy_adapter_key is not None:
                policy_key = generated.policy_adapter_key
            for edit in generated.self_edits:
                trials = []
                for trial in range(len(config.directive_search) + 1):
                    train_job = JobName.train(index, round_index, edit_format, edit.sample_index, trial)
                    train = trained_of(jobs, train_job)
                    key = train.adapter_key if train is not None else None
                    evaluation = evaluations.get(key) if key else None
                    kept = metric_of(retention, key, metric)
                    seed_rewards = []
                    for number in range(config.reward_seeds):
                        seeded = trained_of(
                            jobs,
                            JobName.train(index, round_index, edit_format, edit.sample_index, trial, number),
                        )
                        score = metric_of(evaluations, seeded.adapter_key if seeded else None, metric)
                        base = baseline.mean.value(metric) if baseline is not None else None
                        if score is not None and base is not None:
                            seed_rewards.append(score - base)
                    # The reward of a self-edit: its gain averaged over the seeds it was trained with.
                    reward = None
                    if evaluation is not None and seed_rewards:
                        reward = round(statistics.fmean(seed_rewards), 4)
                    penalty = retention_penalty(config, base_retention, kept)
                    if reward is not None and penalty:  # retention-aware: the gain minus what it erased
                        reward = round(reward - penalty, 4)
                    trials.append(
                        Trial(
                            trial=trial_suffix(trial),
                            directive=trained_directive(train, edit),
                            adapter_key=key,
                            train=train.metrics if train else None,
                            train_reused=train.reused if train else False,
                            train_error=error_of(jobs, train_job),
                            scores=evaluation.mean if evaluation else None,
                            answers=list(evaluation.answers) if evaluation else [],
                            reward=reward,
                            seed_rewards=[round(r, 4) for r in seed_rewards],
                            # What the adapter made the model forget: retention-set score vs the base's.
                            retention=kept,
                            forgetting=None
                            if kept is None or base_retention is None
                            else round(base_retention - kept, 4),
                        )
                    )
                own = trials[0]
                scored = [t for t in trials if t.reward is not None]
                best_trial = max(scored, key=lambda t: t.reward, default=None)  # type: ignore[arg-type,return-value]
                edits.append(
                    SelfEditResult.model_validate(
                        {
                            **edit.model_dump(),
                            "adapter_key": own.adapter_key,
                            "train": own.train,
                            "train_error": own.train_error,
                            "scores": own.scores,
                            "answers": own.answers,
                            "reward": own.reward,
                            "retention": own.retention,
                            "forgetting": own.forgetting,
                            "trials": trials,
                            "best_trial": None if best_trial is None else best_trial.trial,
                            "best_reward": None if best_trial is None else best_trial.reward,
                            "trained_with": "default" if config.self_edit_directive == "default" else "own",
                        }
                    )
                )
        candidates = [(e, t) for e in edits for t in e.trials if t.reward is not None]
        best = max(candidates, key=lambda pair: pair[1].reward, default=None)  # type: ignore[arg-type,return-value]
        results.append(
            PassageResult(
                passage_id=passage.passage_id,
                title=passage.title,
                questions=[
                    QuestionResult(question_id=q.question_id, question=q.question, answers=list(q.answers))
                    for q in passage.questions
                ],
                policy_adapter_key=policy_key,
                baseline=baseline.mean if baseline else None,
                baseline_answers=list(baseline.answers) if baseline else [],
                baseline_retention=base_retention,
                self_edits=edits,
                best=None if best is None else _best(*best),
                errors=errors,
            )
        )
    return results


def _best(edit: SelfEditResult, trial: Trial) -> BestSelfEdit:
    assert trial.reward is not None
    return BestSelfEdit(
        format=edit.format,
        sample_index=edit.sample_index,
        dataset_key=edit.dataset_key,
        adapter_key=trial.adapter_key,
        directive=trial.directive,
        directive_trial=trial.trial,
        reward=trial.reward,
        scores=trial.scores,
        positive=trial.reward > 0,
    )


def round_summary(
    passage_results: list[PassageResult],
    indices: Sequence[int],
    jobs: Jobs,
    config: RunConfig,
    round_index: int,
) -> RoundSummary:
    metric = config.reward_metric
    edits = [e for p in passage_results for e in p.self_edits]
    rewards_by_format: dict[str, list[float]] = defaultdict(list)
    rewards_by_source: dict[str, list[float]] = defaultdict(list)
    rewards_by_directive: dict[str, dict[float, list[float]]] = {
        f: defaultdict(list) for f in DIRECTIVE_FIELDS
    }
    for edit in edits:
        if edit.reward is not None:
            rewards_by_format[edit.format].append(edit.reward)
            # By the source of the directive the adapter trained with: the trainer's default for every
            # self-edit when the run does not train the model's own (`self_edit_directive` "default").
            source = edit.directive_source if edit.trained_with == "own" else "default"
            rewards_by_source[source].append(edit.reward)  # type: ignore[index]
        for trial in edit.trials:
            if trial.reward is not None:
                directive = trial.directive.values()
                for name in DIRECTIVE_FIELDS:
                    rewards_by_directive[name][directive.get(name, 0)].append(trial.reward)
    seconds = {"generate": 0.0, "train": 0.0, "evaluate": 0.0}
    for index in indices:
        evaluations = [JobName.evaluate(index, round_index), JobName.retention(index, round_index)] + (
            [] if round_index else [JobName.baseline(index)]
        )
        seconds["evaluate"] += sum(seconds_of(jobs, job) for job in evaluations)
        for edit_format in config.formats:
            seconds["generate"] += seconds_of(jobs, JobName.generate(index, round_index, edit_format))
    for edit in edits:
        for trial in edit.trials:
            if trial.train and trial.train.seconds is not None and not trial.train_reused:
                seconds["train"] += trial.train.seconds
    baselines = _known([p.baseline for p in passage_results], metric)
    bests = [p.best.scores.value(metric) for p in passage_results if p.best and p.best.scores]
    return RoundSummary(
        metric=metric,
        passages=len(passage_results),
        passages_scored=len(bests),
        mean_baseline=mean(baselines),
        mean_adapted=mean(_known([e.scores for e in edits], metric)),
        mean_best=mean(bests),
        mean_best_gain=mean([p.best.reward for p in passage_results if p.best]),
        mean_reward=mean([e.reward for e in edits if e.reward is not None]),
        mean_retention_base=mean(
            [p.baseline_retention for p in passage_results if p.baseline_retention is not None]
        ),
        mean_retention_adapted=mean([e.retention for e in edits if e.retention is not None]),
        mean_forgetting=mean([e.forgetting for e in edits if e.forgetting is not None]),
        retention_questions=(config.retention_questions or retention_set_size()) if config.retention else 0,
        positive_best=sum(1 for p in passage_results if p.best and p.best.positive),
        self_edits=len(edits),
        reward_by_format={k: mean(v) for k, v in sorted(rewards_by_format.items())},
        reward_by_directive_source={k: mean(v) for k, v in sorted(rewards_by_source.items())},
        reward_by_directive={
            name: {f"{value:g}": mean(rewards) for value, rewards in sorted(by_value.items())}
            for name, by_value in rewards_by_directive.items()
        },
        seconds={k: round(v, 1) for k, v in seconds.items()},
        # How much of a reward belongs to the self-edit and how much is seed noise (reward_seeds >= 2).
        reward_variance=VarianceComponents.model_validate(
            variance_components(
                [e.trials[0].seed_rewards for e in edits if len(e.trials[0].seed_rewards) >= 2]
            )
        )
        if config.reward_seeds >= 2
        else None,
    )


def _known(scores: list[Scores | None], metric: str) -> list[float]:
    """The metric of the scores that have it (an evaluation without scores is left out)."""
    values = [s.value(metric) for s in scores if s is not None]
    return [v for v in values if v is not None]
