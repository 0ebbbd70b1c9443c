"""Small-sample statistics for the reports: mean, standard error and a seeded bootstrap interval."""

from __future__ import annotations

import math
import random
import statistics
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
