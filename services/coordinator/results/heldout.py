"""Results on the held-out passages: SEAL's conditions table (no adapter, passage only, each round's
generator, teachers) with error bars, the specificity control, retention, and the planned comparisons."""

from __future__ import annotations

from collections.abc import Sequence

from seal_lab.formats.passages import Passage
from seal_lab.scoring.stats import describe

from ..run.jobs import JobName, policy_condition, teacher_condition
from ..run.records import Scores
from ..run.result_schemas import (
    ConditionRow,
    Estimate,
    HeldoutEdit,
    HeldoutPassage,
    HeldoutResults,
    RoundRow,
    TrainingSpent,
)
from ..run.schemas import RunConfig
from .comparisons import ALL_METRICS, compare, metric_table, planned_comparisons, power
from .readout import (
    Jobs,
    errors_of,
    evaluations_of,
    mean,
    metric_of,
    self_edits_of,
    trained_directive,
    trained_of,
)


def condition_names(config: RunConfig, teachers: list[str]) -> list[tuple[str, str, str]]:
    """(job key, label, short label for plots) of SEAL's table rows, in order."""
    rows = [
        ("base", "no adapter", "no adapter"),
        ("passage", "passage only", "passage only"),
        (policy_condition(0), "passage + self-edits (round-0 generator)", "passage + round 0"),
    ]
    rows += [
        (policy_condition(r), f"passage + self-edits (policy after round {r})", f"passage + round {r}")
        for r in range(1, config.rounds + 1)
    ]
    rows += [
        (teacher_condition(name), f"passage + {name} self-edits", f"passage + {name}") for name in teachers
    ]
    return rows


def heldout_results(
    passages: list[Passage],
    indices: Sequence[int],
    jobs: Jobs,
    config: RunConfig,
    teachers: list[str],
) -> HeldoutResults:
    metric = config.reward_metric
    rows = condition_names(config, teachers)
    per_passage = []
    for index in indices:
        passage = passages[index]
        baseline = evaluations_of(jobs, JobName.baseline(index)).get("")
        scores: dict[str, float | None] = {} if baseline is None else {"base": baseline.mean.value(metric)}
        metrics: dict[str, dict[str, float]] = {} if baseline is None else {"base": _known(baseline.mean)}
        control: dict[
            str, dict[str, float]
        ] = {}  # condition -> metric -> gain on another passage's questions
        training: dict[str, TrainingSpent] = {}
        retention: dict[str, float | None] = {}
        edits: dict[str, HeldoutEdit] = {}
        for condition, _, _ in rows[1:]:

            def step(name: str, i: int = index, c: str = condition) -> JobName:
                return JobName.heldout(i, c, name)

            made = self_edits_of(jobs, step("edit"))
            train = trained_of(jobs, step("train"))
            key = train.adapter_key if train else None
            evaluations = evaluations_of(jobs, step("evaluate"))
            score = metric_of(evaluations, key, metric)
            kept = evaluations_of(jobs, step("retention"))
            if score is not None:
                scores[condition] = score
                metrics[condition] = _known(evaluations[key].mean)  # type: ignore[index]
            spent = train.metrics if train else None
            if spent is not None and spent.model_dump():
                training[condition] = TrainingSpent(
                    steps=spent.steps, tokens=spent.tokens, seconds=spent.seconds
                )
            other = evaluations_of(jobs, step("control"))
            if key and key in other and "" in other:
                mine, theirs = _known(other[key].mean), _known(other[""].mean)
                control[condition] = {m: round(mine[m] - theirs[m], 5) for m in mine if m in theirs}
            if metric_of(kept, key, metric) is not None:
                retention[condition] = metric_of(kept, key, metric)
                retention["base"] = metric_of(kept, "", metric)
            if made and made.self_edits:
                edit = made.self_edits[0]
                edits[condition] = HeldoutEdit(
                    dataset_key=edit.dataset_key,
                    adapter_key=key,
                    preview=edit.preview,
                    num_texts=edit.num_texts,
                    directive=trained_directive(train, edit),
                )
        per_passage.append(
            HeldoutPassage(
                passage_id=passage.passage_id,
                title=passage.title,
                scores=scores,
                metrics=metrics,
                control_gain=control,
                training=training,
                retention=retention,
                self_edits=edits,
                errors=errors_of(jobs, lambda job, i=index: job.index == i),
            )
        )
    conditions = []
    for condition, label, short in rows:
        values = [p.scores[condition] for p in per_passage if condition in p.scores]
        gains = [
            p.scores[condition] - p.scores["base"]  # type: ignore[operator]
            for p in per_passage
            if condition in p.scores and "base" in p.scores
        ]
        kept = [p.retention[condition] for p in per_passage if condition in p.retention]
        if condition == "base":
            kept = [p.retention["base"] for p in per_passage if "base" in p.retention][:1]
        conditions.append(
            ConditionRow(
                condition=condition,
                label=label,
                short_label=short,
                **describe(values, config.seed),  # type: ignore[arg-type]
                gain=describe(gains, config.seed),  # type: ignore[arg-type]
                retention=mean(kept),  # type: ignore[arg-type]
                retention_n=len(kept),
            )
        )
    by_round = [
        RoundRow(round=r, **next(c for c in conditions if c.condition == f"p{r}").model_dump())
        for r in range(config.rounds + 1)
    ]
    keys = [condition for condition, _, _ in rows]
    labels = {condition: label for condition, label, _ in rows}
    pairs = planned_comparisons(keys, config.rounds)
    for row in conditions:  # the budget each condition trained with, and its gain on other passages
        spent_on = [p.training[row.condition] for p in per_passage if row.condition in p.training]
        row.steps = Estimate.model_validate(
            describe([t.steps for t in spent_on if t.steps is not None], config.seed)
        )
        row.tokens = mean([t.tokens for t in spent_on if t.tokens is not None])
        row.control_gain = Estimate.model_validate(
            describe(
                [
                    p.control_gain[row.condition][metric]
                    for p in per_passage
                    if metric in p.control_gain.get(row.condition, {})
                ],
                config.seed,
            )
        )
    return HeldoutResults(
        metric=metric,
        passages=per_passage,
        conditions=conditions,
        by_round=by_round,
        metrics=metric_table(per_passage, keys, config.seed),
        comparisons=compare(per_passage, labels, pairs, metric, config.seed),
        power=power(per_passage, pairs, metric),
    )


def _known(mean: Scores) -> dict[str, float]:
    """The metrics of an evaluation's mean that it has (records written before a metric existed lack it, and
    only an evaluator with SEAL's judge gives `judge`)."""
    values = mean.model_dump()
    return {m: values[m] for m in ALL_METRICS if isinstance(values.get(m), int | float)}
