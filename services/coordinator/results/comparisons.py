"""The conditions table as an experiment: every metric per condition, and the planned paired comparisons.

SEAL's claim is an ordering of conditions on the same held-out passages, so every comparison is paired by
passage: per-passage differences, paired t and Wilcoxon tests, Holm's correction over the planned
comparisons of a metric, a bootstrap interval, and the minimum detectable effect at the N used. A null is
reported with its bounds, not hidden (`seal_lab.scoring.stats.verdict`).

Planned comparisons (fixed before any data is seen):
- passage + round-0 self-edits vs passage only (does training on self-edits beat training on the passage?);
- each round's policy vs round 0 (do ReST-EM rounds make the self-edits better?);
- each teacher's self-edits vs passage only.
"""

from __future__ import annotations

from seal_lab.scoring.stats import describe, holm, minimum_detectable_effect, paired_test, verdict

from ..run.jobs import is_teacher_condition, policy_condition
from ..run.result_schemas import Comparison, Comparisons, HeldoutPassage, MetricEstimate, Power

#: Every score the evaluator reports per question set. `gold_logprob` is the decoding-free one: the mean
#: log-likelihood per token of the gold answer (its gain over the base model is the adapter's knowledge).
METRICS = ("f1", "contains", "exact_match", "token_recall", "gold_logprob")
#: Scores an evaluator gives only when configured to: `judge`, SEAL's judge's fraction of answers judged
#: correct (an evaluator with SEAL_EVALUATOR_JUDGE_BASE_URL). Reported only when some passage has them, so a
#: run without a judge shows no judge column rather than a column of empty cells.
OPTIONAL_METRICS = ("judge",)
ALL_METRICS = METRICS + OPTIONAL_METRICS


def reported_metrics(per_passage: list[HeldoutPassage]) -> tuple[str, ...]:
    """METRICS, and the optional ones some passage has a score for."""
    present = {m for p in per_passage for scores in p.metrics.values() for m in scores}
    return METRICS + tuple(m for m in OPTIONAL_METRICS if m in present)


def planned_comparisons(condition_keys: list[str], rounds: int) -> list[tuple[str, str]]:
    """(a, b) pairs, a compared against b, for the conditions present."""
    present = set(condition_keys)
    pairs = [(policy_condition(0), "passage")]
    pairs += [(policy_condition(r), policy_condition(0)) for r in range(1, rounds + 1)]
    pairs += [(key, "passage") for key in condition_keys if is_teacher_condition(key)]
    return [(a, b) for a, b in pairs if a in present and b in present]


def _paired(per_passage: list[HeldoutPassage], metric: str, a: str, b: str) -> tuple[list, list]:
    both = [p for p in per_passage if a in p.metrics and b in p.metrics]
    both = [p for p in both if metric in p.metrics[a] and metric in p.metrics[b]]
    return [p.metrics[a][metric] for p in both], [p.metrics[b][metric] for p in both]


def compare(
    per_passage: list[HeldoutPassage],
    labels: dict[str, str],
    pairs: list[tuple[str, str]],
    primary: str,
    seed: int,
) -> Comparisons:
    """Every planned comparison on every metric, Holm-corrected per metric; verdicts in words.

    `per_passage[i].metrics[condition][metric]` is the passage's mean score under that condition.
    """
    by_metric: dict[str, list[Comparison]] = {}
    for metric in reported_metrics(per_passage):
        tests = []
        for a, b in pairs:
            values_a, values_b = _paired(per_passage, metric, a, b)
            tests.append({"a": a, "b": b, **paired_test(values_a, values_b, seed)})
        adjusted = holm([t["t_p"] for t in tests])
        for test, p in zip(tests, adjusted, strict=True):
            test["holm_p"] = p
            test["verdict"] = verdict(
                test, adjusted_p=p, label_a=labels[test["a"]], label_b=labels[test["b"]]
            )
        by_metric[metric] = [Comparison.model_validate(test) for test in tests]
    return Comparisons(primary_metric=primary, planned=[list(p) for p in pairs], by_metric=by_metric)


def power(per_passage: list[HeldoutPassage], pairs: list[tuple[str, str]], metric: str) -> Power:
    """The minimum detectable effect (two-sided paired t, alpha 0.05, power 0.8) at this N, from the spread
    of the paired differences of the planned comparisons (the largest SD among them: the conservative one)."""
    sds, n = [], 0
    for a, b in pairs:
        values_a, values_b = _paired(per_passage, metric, a, b)
        test = paired_test(values_a, values_b)
        if test["sd_diff"] is not None:
            sds.append(test["sd_diff"])
            n = max(n, test["n"])
    sd = max(sds) if sds else None
    return Power(
        metric=metric, n=n, sd_of_differences=sd, mde=None if sd is None else minimum_detectable_effect(sd, n)
    )


def metric_table(
    per_passage: list[HeldoutPassage], conditions: list[str], seed: int
) -> dict[str, dict[str, MetricEstimate]]:
    """condition -> metric -> {n, mean, stderr, ci95, gain (vs no adapter)}."""
    table: dict[str, dict[str, MetricEstimate]] = {}
    metrics = reported_metrics(per_passage)
    for condition in conditions:
        row: dict[str, MetricEstimate] = {}
        for metric in metrics:
            values = [
                p.metrics[condition][metric] for p in per_passage if metric in p.metrics.get(condition, {})
            ]
            gains = [
                p.metrics[condition][metric] - p.metrics["base"][metric]
                for p in per_passage
                if metric in p.metrics.get(condition, {}) and metric in p.metrics.get("base", {})
            ]
            row[metric] = MetricEstimate.model_validate(
                {**describe(values, seed), "gain": describe(gains, seed)}
            )
        table[condition] = row
    return table
