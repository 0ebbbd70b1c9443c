"""Small-sample statistics: mean, standard error, seeded bootstrap interval."""

from __future__ import annotations

import math
import statistics

import pytest

from seal_lab.stats import bootstrap_ci, describe


def test_describe_empty():
    assert describe([]) == {"n": 0, "mean": None, "stderr": None, "ci95": None}


def test_describe_one_value_has_no_error_bar():
    assert describe([0.42]) == {"n": 1, "mean": 0.42, "stderr": None, "ci95": None}


def test_describe_known_values():
    values = [1.0, 2.0, 3.0, 4.0]
    stats = describe(values)
    assert stats["n"] == 4 and stats["mean"] == 2.5
    # Sample standard deviation (n - 1): sqrt(5/3) = 1.29099; over sqrt(4) -> 0.6455.
    assert stats["stderr"] == 0.6455
    assert stats["stderr"] == round(statistics.stdev(values) / math.sqrt(len(values)), 4)
    low, high = stats["ci95"]
    assert 1.0 <= low <= 2.5 <= high <= 4.0


def test_describe_two_values_stderr_is_half_the_difference():
    stats = describe([0.1, 0.3])
    assert stats["mean"] == pytest.approx(0.2) and stats["stderr"] == pytest.approx(0.1)
    # With two values, both extremes are drawn far more often than 2.5% of the time.
    assert stats["ci95"] == [pytest.approx(0.1), pytest.approx(0.3)]


def test_describe_rounds_to_four_digits():
    stats = describe([1 / 3, 2 / 3, 1.0])
    assert stats["mean"] == 0.6667 and stats["stderr"] == 0.1925


def test_constant_values_have_zero_error():
    stats = describe([0.5, 0.5, 0.5])
    assert stats["stderr"] == 0.0 and stats["ci95"] == [0.5, 0.5]


def test_bootstrap_needs_two_values():
    assert bootstrap_ci([]) is None and bootstrap_ci([1.0]) is None


def test_bootstrap_contains_the_mean_and_stays_in_range():
    values = [0.0, 0.1, 0.25, 0.3, 0.8, 0.55, 0.05, 0.6]
    low, high = bootstrap_ci(values, seed=3)
    assert min(values) <= low < statistics.fmean(values) < high <= max(values)
    # A wider level gives a wider interval on the same resamples.
    low90, high90 = bootstrap_ci(values, seed=3, level=0.9)
    assert low <= low90 and high90 <= high


def test_bootstrap_is_reproducible_per_seed():
    values = [0.2, 0.9, 0.4, 0.1, 0.7]
    assert bootstrap_ci(values, seed=7) == bootstrap_ci(values, seed=7)
    assert describe(values, seed=7) == describe(values, seed=7)
    # Different seeds resample differently (the interval may move a little, never leave the range).
    other = bootstrap_ci(values, seed=8)
    assert other is not None and min(values) <= other[0] <= other[1] <= max(values)
