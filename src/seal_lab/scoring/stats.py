"""Small-sample statistics for the reports.

Mean, standard error and a seeded bootstrap interval (`describe`, `bootstrap_ci`); paired comparisons of
conditions scored on the same passages (`paired_test`, `cluster_bootstrap_ci`, `holm`, `verdict`), power
(`minimum_detectable_effect`, `required_n`) and seed-vs-self-edit variance (`variance_components`).
"""

from __future__ import annotations

import math
import random
import statistics
import warnings
from typing import Any

BOOTSTRAP_RESAMPLES = 2000


def bootstrap_ci(values: list[float], seed: int = 0, level: float = 0.95) -> tuple[float, float] | None:
    """Percentile bootstrap interval of the mean; seeded, so a report is reproducible."""
    if len(values) < 2:
        return None
    rng = random.Random(seed)
    n = len(values)
    means = sorted(statistics.fmean(rng.choices(values, k=n)) for _ in range(BOOTSTRAP_RESAMPLES))
    low = means[int((1 - level) / 2 * (BOOTSTRAP_RESAMPLES - 1))]
    high = means[int((1 + level) / 2 * (BOOTSTRAP_RESAMPLES - 1))]
    return low, high


def describe(values: list[float], seed: int = 0) -> dict[str, Any]:
    """{n, mean, stderr, ci95}; stderr and ci95 are None below two values."""
    if not values:
        return {"n": 0, "mean": None, "stderr": None, "ci95": None}
    stderr = statistics.stdev(values) / math.sqrt(len(values)) if len(values) >= 2 else None
    ci = bootstrap_ci(values, seed)
    return {
        "n": len(values),
        "mean": round(statistics.fmean(values), 4),
        "stderr": None if stderr is None else round(stderr, 4),
        "ci95": None if ci is None else [round(ci[0], 4), round(ci[1], 4)],
    }


# --- Paired comparisons -----------------------------------------------------------------------------------
# Conditions of an experiment are scored on the same passages, so the comparison is paired: the unit is the
# per-passage difference d = a - b. Everything below returns plain, rounded floats (JSON-ready); p-values are
# rounded to 4 significant digits so that a very small p stays distinguishable from zero.


def _missing(value: float | None) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _r(value: float | None, digits: int = 6) -> float | None:
    """Round to `digits` decimals as a plain float; None and non-finite values become None."""
    if value is None or not math.isfinite(value):
        return None
    return round(float(value), digits)


def _rp(p: float | None) -> float | None:
    """A p-value as a plain float with 4 significant digits (None stays None)."""
    if p is None or math.isnan(p):
        return None
    return float(f"{min(max(float(p), 0.0), 1.0):.4g}")


def _percentile_interval(stats: list[float], level: float) -> tuple[float, float]:
    """The same percentile rule as `bootstrap_ci`, on an already computed list of resampled statistics."""
    ordered = sorted(stats)
    last = len(ordered) - 1
    return ordered[int((1 - level) / 2 * last)], ordered[int((1 + level) / 2 * last)]


def minimum_detectable_effect(
    sd: float | None, n: int, alpha: float = 0.05, power: float = 0.8
) -> float | None:
    """Smallest mean difference a two-sided paired t test detects with the given power at this n.

    MDE = (t_{1-alpha/2, n-1} + t_{power, n-1}) * sd / sqrt(n), with sd the standard deviation of the
    per-passage differences. None for n < 2 or a missing sd.
    """
    from scipy import stats as st

    if n < 2 or _missing(sd):
        return None
    if not (0 < alpha < 1 and 0 < power < 1):
        raise ValueError("alpha and power must lie strictly between 0 and 1")
    df = n - 1
    factor = float(st.t.ppf(1 - alpha / 2, df) + st.t.ppf(power, df))
    return _r(factor * float(sd) / math.sqrt(n))


def required_n(sd: float, effect: float, alpha: float = 0.05, power: float = 0.8) -> int:
    """Smallest number of passages whose minimum detectable effect is at most `effect` (paired t test).

    The MDE decreases with n, so the answer is found by doubling an upper bound and bisecting below it.
    """
    if effect <= 0:
        raise ValueError("effect must be positive")
    if sd < 0:
        raise ValueError("sd must not be negative")

    def detects(n: int) -> bool:
        mde = minimum_detectable_effect(sd, n, alpha, power)
        return mde is not None and mde <= effect

    if detects(2):
        return 2
    low, high = 2, 4  # invariant: detects(low) is False
    while not detects(high):
        low, high = high, high * 2
    while high - low > 1:
        mid = (low + high) // 2
        if detects(mid):
            high = mid
        else:
            low = mid
    return high


def paired_test(a: list[float | None], b: list[float | None], seed: int = 0) -> dict[str, Any]:
    """Compare two conditions scored on the same passages (a[i] and b[i] belong to passage i).

    Pairs where either value is None or NaN are dropped (counted in `dropped`). Returns
    {n, dropped, mean_a, mean_b, mean_diff, sd_diff, stderr, t_stat, t_p, wilcoxon_stat, wilcoxon_p, ci95, mde}
    with d = a - b: paired t test (two-sided), Wilcoxon signed-rank test (zero_method="wilcox", two-sided;
    p = 1.0 when every difference is zero), a seeded percentile bootstrap 95% interval of the mean difference
    and the minimum detectable effect at this n (alpha 0.05, power 0.8). Below two pairs the tests,
    sd, stderr, interval and MDE are None.
    """
    from scipy import stats as st

    if len(a) != len(b):
        raise ValueError(f"paired samples differ in length: {len(a)} != {len(b)}")
    pairs = [(float(x), float(y)) for x, y in zip(a, b, strict=True) if not (_missing(x) or _missing(y))]
    n = len(pairs)
    d = [x - y for x, y in pairs]
    result: dict[str, Any] = {
        "n": n,
        "dropped": len(a) - n,
        "mean_a": _r(statistics.fmean(x for x, _ in pairs)) if n else None,
        "mean_b": _r(statistics.fmean(y for _, y in pairs)) if n else None,
        "mean_diff": _r(statistics.fmean(d)) if n else None,
        "sd_diff": None,
        "stderr": None,
        "t_stat": None,
        "t_p": None,
        "wilcoxon_stat": None,
        "wilcoxon_p": None,
        "ci95": None,
        "mde": None,
    }
    if n < 2:
        return result
    sd = statistics.stdev(d)
    result["sd_diff"] = _r(sd)
    result["stderr"] = _r(sd / math.sqrt(n))
    if sd == 0:
        # No spread: t is undefined. All-zero differences are no evidence (p = 1); a constant non-zero
        # shift is the limit of overwhelming evidence (p = 0), with no finite t to report.
        result["t_stat"], result["t_p"] = (0.0, 1.0) if d[0] == 0 else (None, 0.0)
    else:
        with warnings.catch_warnings():  # near-identical values: scipy warns, the result is still right
            warnings.simplefilter("ignore", RuntimeWarning)
            t_res = st.ttest_1samp(d, 0.0)
        result["t_stat"], result["t_p"] = _r(float(t_res.statistic)), _rp(float(t_res.pvalue))
    if all(x == 0 for x in d):
        result["wilcoxon_stat"], result["wilcoxon_p"] = 0.0, 1.0
    else:
        w_res = st.wilcoxon(d, zero_method="wilcox", alternative="two-sided")
        result["wilcoxon_stat"], result["wilcoxon_p"] = _r(float(w_res.statistic)), _rp(float(w_res.pvalue))
    ci = bootstrap_ci(d, seed)
    result["ci95"] = None if ci is None else [_r(ci[0]), _r(ci[1])]
    result["mde"] = minimum_detectable_effect(sd, n)
    return result


def cluster_bootstrap_ci(
    clusters: list[list[float]], seed: int = 0, level: float = 0.95, resamples: int = 2000
) -> list[float] | None:
    """Percentile interval of the mean over all values, resampling whole clusters with replacement.

    Use it when values are not independent, e.g. per-question differences clustered by passage: the
    passages are resampled, and each resample's statistic is the mean of every value in the drawn
    passages. None/NaN values and empty clusters are left out; fewer than 2 clusters give None.
    """
    kept = [[float(v) for v in c if not _missing(v)] for c in clusters]
    kept = [c for c in kept if c]
    k = len(kept)
    if k < 2:
        return None
    sums = [math.fsum(c) for c in kept]
    sizes = [len(c) for c in kept]
    rng = random.Random(seed)
    indexes = range(k)
    means = []
    for _ in range(resamples):
        drawn = rng.choices(indexes, k=k)
        means.append(math.fsum(sums[i] for i in drawn) / sum(sizes[i] for i in drawn))
    low, high = _percentile_interval(means, level)
    return [_r(low), _r(high)]


def holm(pvalues: list[float | None]) -> list[float | None]:
    """Holm-Bonferroni adjusted p-values, in the input order.

    The i-th smallest of the m present p-values is multiplied by (m - i + 1), made monotone (running
    maximum) and capped at 1. None (or NaN) passes through as None and does not count toward m.
    """
    present = [(p, i) for i, p in enumerate(pvalues) if not _missing(p)]
    for p, _ in present:
        if not 0 <= p <= 1:
            raise ValueError(f"not a p-value: {p}")
    m = len(present)
    adjusted: list[float | None] = [None] * len(pvalues)
    running = 0.0
    for rank, (p, i) in enumerate(sorted(present)):
        running = max(running, min(1.0, (m - rank) * p))
        adjusted[i] = _rp(running)
    return adjusted


def _signed(x: float) -> str:
    return f"{x:+.3f}" if x == 0 or abs(x) >= 0.001 else f"{x:+.2g}"


def _p(p: float) -> str:
    return "p<0.001" if p < 0.001 else f"p={p:.3g}"


def verdict(
    test: dict[str, Any],
    alpha: float = 0.05,
    adjusted_p: float | None = None,
    *,
    label_a: str = "A",
    label_b: str = "B",
) -> str:
    """One sentence on a `paired_test` result, for a report.

    The decision uses `adjusted_p` (e.g. Holm over all comparisons of the experiment) when given, else the
    raw paired t p. A significant difference is reported as winner minus loser with its 95% interval; a null
    is reported with the largest effect the interval leaves open and the minimum detectable effect, so that
    "no difference" is never read as "no effect".
    """
    n = test.get("n", 0)
    raw_p = test.get("t_p")
    diff = test.get("mean_diff")
    if raw_p is None or diff is None:
        return f"Too few paired passages to compare {label_a} and {label_b} (N={n})."
    decision_p = raw_p if adjusted_p is None else adjusted_p
    ci = test.get("ci95")
    tests = f"paired t {_p(raw_p)}"
    if test.get("wilcoxon_p") is not None:
        tests += f", Wilcoxon {_p(test['wilcoxon_p'])}"
    if adjusted_p is not None:
        tests += f", Holm-adjusted {_p(adjusted_p)}"
    if decision_p < alpha and diff != 0:
        sign = 1 if diff > 0 else -1
        winner, loser = (label_a, label_b) if sign > 0 else (label_b, label_a)
        shown = _signed(sign * diff)
        if ci is not None:
            low, high = sorted((sign * ci[0], sign * ci[1]))
            shown += f" (95% CI {_signed(low)} to {_signed(high)})"
        return f"{winner} beats {loser} at N={n}: {shown}, {tests}."
    shown = _signed(diff)
    sentence = f"No detectable difference between {label_a} and {label_b} at N={n}: {shown}"
    if ci is not None:
        bound = max(abs(ci[0]), abs(ci[1]))
        sentence += (
            f" (95% CI {_signed(ci[0])} to {_signed(ci[1])}), {tests}; an effect larger than {bound:.3f} "
            "in either direction (the larger CI bound in absolute value) would likely have been seen"
        )
    else:
        sentence += f", {tests}"
    mde = test.get("mde")
    if mde is not None:
        sentence += f"; MDE {mde:.3f} (alpha 0.05, power 0.8)"
    return sentence + "."


# --- Variance components ----------------------------------------------------------------------------------


def variance_components(groups: list[list[float]]) -> dict[str, Any]:
    """One-way random-effects decomposition of rewards: self-edits (groups) trained with several seeds.

    groups[i] holds the rewards of self-edit i over its seeds. With k groups of sizes n_i (N values):
    within = MS_within (pooled seed-noise variance over groups of size >= 2), MS_between =
    sum n_i (mean_i - mean)^2 / (k - 1), n0 = (N - sum n_i^2 / N) / (k - 1) and
    between = max(0, (MS_between - MS_within) / n0). icc = between / (between + within) is ICC(1), the share
    of reward variance that belongs to the self-edit rather than to the seed. Returns
    {n_groups, mean_group_size, between, within, icc, ms_between, ms_within}; None where not computable.
    """
    kept = [[float(v) for v in g if not _missing(v)] for g in groups]
    kept = [g for g in kept if g]
    k = len(kept)
    total = sum(len(g) for g in kept)
    result: dict[str, Any] = {
        "n_groups": k,
        "mean_group_size": _r(total / k, 4) if k else None,
        "between": None,
        "within": None,
        "icc": None,
        "ms_between": None,
        "ms_within": None,
    }
    multi = [g for g in kept if len(g) >= 2]
    df_within = sum(len(g) - 1 for g in multi)
    if df_within > 0:
        ss_within = math.fsum(math.fsum((v - statistics.fmean(g)) ** 2 for v in g) for g in multi)
        ms_within = ss_within / df_within
        result["within"] = result["ms_within"] = _r(ms_within)
    if k < 2:
        return result
    grand = math.fsum(math.fsum(g) for g in kept) / total
    ms_between = math.fsum(len(g) * (statistics.fmean(g) - grand) ** 2 for g in kept) / (k - 1)
    result["ms_between"] = _r(ms_between)
    if df_within == 0:
        return result
    n0 = (total - sum(len(g) ** 2 for g in kept) / total) / (k - 1)
    between = max(0.0, (ms_between - ms_within) / n0)
    result["between"] = _r(between)
    if between + ms_within > 0:
        result["icc"] = _r(between / (between + ms_within), 4)
    return result
