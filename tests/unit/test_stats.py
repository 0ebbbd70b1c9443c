"""Small-sample statistics: mean, standard error, seeded bootstrap interval."""

from __future__ import annotations

import json
import math
import statistics

import pytest

from seal_lab.scoring.stats import (
    bootstrap_ci,
    cluster_bootstrap_ci,
    describe,
    holm,
    minimum_detectable_effect,
    paired_test,
    required_n,
    variance_components,
    verdict,
)


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


# --- Paired comparisons --------------------------------------------------------------------------------------


def test_paired_test_hand_computed_three_pairs():
    # d = [1, 2, 3]: mean 2, sd 1, stderr 1/sqrt(3), t = 2 * sqrt(3) = 3.4641 on 2 df.
    # For 2 df the t distribution has a closed form: two-sided p = 1 - |t| / sqrt(2 + t^2) = 1 - sqrt(12/14).
    result = paired_test([2.0, 4.0, 6.0], [1.0, 2.0, 3.0])
    assert result["n"] == 3 and result["dropped"] == 0
    assert result["mean_a"] == 4.0 and result["mean_b"] == 2.0 and result["mean_diff"] == 2.0
    assert result["sd_diff"] == 1.0
    assert result["stderr"] == pytest.approx(1 / math.sqrt(3), abs=1e-6)
    assert result["t_stat"] == pytest.approx(2 * math.sqrt(3), abs=1e-6)
    assert result["t_p"] == pytest.approx(1 - math.sqrt(12 / 14), rel=1e-3)  # 0.07418
    # Wilcoxon: all three differences positive, so W- = 0; exact two-sided p = 2 * (1 / 2^3) = 0.25.
    assert result["wilcoxon_stat"] == 0.0 and result["wilcoxon_p"] == 0.25
    low, high = result["ci95"]
    assert 1.0 <= low <= 2.0 <= high <= 3.0
    # MDE on 2 df: (t_.975,2 + t_.80,2) * sd / sqrt(3) = (4.3027 + 1.0607) / 1.7321 = 3.0966 (t table).
    assert result["mde"] == pytest.approx(3.0966, abs=1e-3)


def test_paired_test_two_pairs_cauchy_case():
    # d = [1, 3]: mean 2, sd sqrt(2), stderr 1, t = 2 on 1 df (Cauchy): p = 1 - (2 / pi) * atan(2) = 0.29517.
    result = paired_test([1.0, 3.0], [0.0, 0.0])
    assert result["t_stat"] == pytest.approx(2.0)
    assert result["t_p"] == pytest.approx(1 - 2 / math.pi * math.atan(2), rel=1e-3)


def test_paired_test_drops_missing_pairs_and_is_json_ready():
    a = [0.5, None, 0.7, float("nan"), 0.9, 0.6]
    b = [0.4, 0.3, None, 0.2, 0.6, 0.6]
    result = paired_test(a, b)
    assert result["n"] == 3 and result["dropped"] == 3
    assert result["mean_a"] == pytest.approx(2.0 / 3, abs=1e-6) and result["mean_diff"] == pytest.approx(
        0.4 / 3, abs=1e-6
    )
    assert json.loads(json.dumps(result)) == result
    assert isinstance(result["ci95"], list)
    assert all(v is None or type(v) in (int, float, list) for v in result.values())


def test_paired_test_unequal_lengths_raise():
    with pytest.raises(ValueError, match="length"):
        paired_test([1.0, 2.0], [1.0])


def test_paired_test_below_two_pairs_has_no_tests():
    one = paired_test([0.5, None], [0.25, 0.1])
    assert one["n"] == 1 and one["dropped"] == 1 and one["mean_diff"] == 0.25
    for key in ("sd_diff", "stderr", "t_stat", "t_p", "wilcoxon_stat", "wilcoxon_p", "ci95", "mde"):
        assert one[key] is None
    empty = paired_test([], [])
    assert empty["n"] == 0 and empty["mean_a"] is None and empty["t_p"] is None


def test_paired_test_identical_conditions_give_p_one():
    result = paired_test([0.1, 0.5, 0.9], [0.1, 0.5, 0.9])
    assert result["mean_diff"] == 0.0 and result["sd_diff"] == 0.0
    assert result["t_p"] == 1.0 and result["wilcoxon_p"] == 1.0 and result["wilcoxon_stat"] == 0.0


def test_paired_test_is_reproducible_and_ci_uses_the_differences():
    a = [0.61, 0.55, 0.72, 0.48, 0.66, 0.59, 0.70, 0.52]
    b = [0.58, 0.50, 0.69, 0.49, 0.60, 0.55, 0.64, 0.51]
    assert paired_test(a, b, seed=4) == paired_test(a, b, seed=4)
    d = [x - y for x, y in zip(a, b, strict=True)]
    low, high = bootstrap_ci(d, seed=4)
    assert paired_test(a, b, seed=4)["ci95"] == [pytest.approx(low), pytest.approx(high)]


# --- Cluster bootstrap ---------------------------------------------------------------------------------------


def test_cluster_bootstrap_needs_two_clusters():
    assert cluster_bootstrap_ci([]) is None
    assert cluster_bootstrap_ci([[0.1, 0.2, 0.3]]) is None
    assert cluster_bootstrap_ci([[0.1, 0.2], []]) is None  # an empty cluster is not a cluster


def test_cluster_bootstrap_reproducible_and_covers_the_mean():
    clusters = [[0.1, 0.2], [0.4], [-0.1, 0.0, 0.05], [0.3, 0.25], [0.0]]
    ci = cluster_bootstrap_ci(clusters, seed=11)
    assert ci == cluster_bootstrap_ci(clusters, seed=11)
    assert isinstance(ci, list) and len(ci) == 2
    values = [v for c in clusters for v in c]
    assert min(values) <= ci[0] < statistics.fmean(values) < ci[1] <= max(values)
    narrower = cluster_bootstrap_ci(clusters, seed=11, level=0.8)
    assert ci[0] <= narrower[0] and narrower[1] <= ci[1]


def test_cluster_bootstrap_equal_sizes_matches_bootstrap_of_cluster_means():
    # With equal cluster sizes the pooled mean of drawn clusters is the mean of their means, and the draws use
    # the same random stream as bootstrap_ci, so the two intervals coincide.
    clusters = [[0.1, 0.3], [0.5, 0.5], [0.0, 0.2], [0.9, 0.7], [0.4, 0.2]]
    means = [statistics.fmean(c) for c in clusters]
    low, high = bootstrap_ci(means, seed=5)
    assert cluster_bootstrap_ci(clusters, seed=5) == [pytest.approx(low), pytest.approx(high)]


def test_cluster_bootstrap_is_wider_than_naive_when_values_are_clustered():
    # Each passage repeats one value: 20 "observations" carry the information of 4 passages.
    clusters = [[0.0] * 5, [0.2] * 5, [0.6] * 5, [1.0] * 5]
    flat = [v for c in clusters for v in c]
    naive_low, naive_high = bootstrap_ci(flat, seed=1)
    low, high = cluster_bootstrap_ci(clusters, seed=1)
    assert high - low > naive_high - naive_low


# --- Holm ----------------------------------------------------------------------------------------------------


def test_holm_known_lists():
    # Sorted: 0.01 * 3 = 0.03; 0.03 * 2 = 0.06; 0.04 * 1 = 0.04 -> raised to the running maximum 0.06.
    assert holm([0.01, 0.04, 0.03]) == [pytest.approx(0.03), pytest.approx(0.06), pytest.approx(0.06)]
    assert holm([0.01, 0.02, 0.03, 0.04]) == [pytest.approx(v) for v in (0.04, 0.06, 0.06, 0.06)]


def test_holm_caps_at_one_and_passes_none_through():
    assert holm([0.5, 0.6]) == [1.0, 1.0]
    assert holm([None, 0.01, 0.04, None, 0.03]) == [
        None,
        pytest.approx(0.03),
        pytest.approx(0.06),
        None,
        pytest.approx(0.06),
    ]
    assert holm([]) == [] and holm([None]) == [None]
    assert holm([0.02]) == [0.02]
    with pytest.raises(ValueError):
        holm([1.5])


# --- Power ---------------------------------------------------------------------------------------------------


def test_mde_sd_point_one_forty_passages():
    # t table: t_.975,39 = 2.0227 and t_.80,39 = 0.8509, so MDE = 2.8736 * 0.1 / sqrt(40) = 0.04544.
    mde = minimum_detectable_effect(0.1, 40)
    assert mde == pytest.approx(0.04544, abs=5e-5)
    # The t quantiles exceed the normal ones: (1.95996 + 0.84162) * 0.1 / sqrt(40) = 0.04430.
    assert mde > (1.959964 + 0.841621) * 0.1 / math.sqrt(40)
    assert minimum_detectable_effect(0.1, 1) is None and minimum_detectable_effect(0.1, 0) is None
    assert minimum_detectable_effect(0.0, 10) == 0.0
    assert minimum_detectable_effect(0.1, 40, power=0.9) > mde


def test_required_n_is_consistent_with_mde():
    n = required_n(0.1, 0.0455)
    assert n == 40
    assert minimum_detectable_effect(0.1, n) <= 0.0455 < minimum_detectable_effect(0.1, n - 1)
    # Textbook anchor: a paired t test for a standardized effect d = 0.5 at alpha 0.05, power 0.8 needs
    # 34 pairs (G*Power's answer for this design).
    assert required_n(1.0, 0.5) == 34
    assert required_n(0.0, 0.01) == 2
    large = required_n(1.0, 0.01)
    assert minimum_detectable_effect(1.0, large) <= 0.01 < minimum_detectable_effect(1.0, large - 1)
    with pytest.raises(ValueError):
        required_n(0.1, 0.0)


# --- Verdict -------------------------------------------------------------------------------------------------


def _test_dict(**overrides):
    base = {
        "n": 40,
        "dropped": 0,
        "mean_a": 0.5,
        "mean_b": 0.469,
        "mean_diff": 0.031,
        "sd_diff": 0.06,
        "stderr": 0.0095,
        "t_stat": 3.26,
        "t_p": 0.003,
        "wilcoxon_stat": 150.0,
        "wilcoxon_p": 0.004,
        "ci95": [0.012, 0.05],
        "mde": 0.030,
    }
    return {**base, **overrides}


def test_verdict_significant_wording():
    sentence = verdict(_test_dict(), adjusted_p=0.009, label_a="SEAL", label_b="base")
    assert sentence == (
        "SEAL beats base at N=40: +0.031 (95% CI +0.012 to +0.050), "
        "paired t p=0.003, Wilcoxon p=0.004, Holm-adjusted p=0.009."
    )


def test_verdict_reports_the_winner_when_b_is_better():
    sentence = verdict(_test_dict(mean_diff=-0.031, ci95=[-0.05, -0.012]), label_a="A", label_b="B")
    assert sentence.startswith("B beats A at N=40: +0.031 (95% CI +0.012 to +0.050), paired t p=0.003")


def test_verdict_null_reports_the_bound_and_mde():
    test = _test_dict(mean_diff=0.004, ci95=[-0.011, 0.019], t_p=0.52, wilcoxon_p=0.48, mde=0.03)
    sentence = verdict(test, label_a="A", label_b="B")
    assert sentence.startswith(
        "No detectable difference between A and B at N=40: +0.004 (95% CI -0.011 to +0.019)"
    )
    assert "paired t p=0.52" in sentence and "Wilcoxon p=0.48" in sentence
    assert "an effect larger than 0.019" in sentence and "MDE 0.030" in sentence


def test_verdict_decides_on_the_adjusted_p():
    # Raw p 0.01 is significant alone, but not after Holm over the experiment's comparisons.
    sentence = verdict(_test_dict(t_p=0.01), adjusted_p=0.08)
    assert sentence.startswith("No detectable difference") and "Holm-adjusted p=0.08" in sentence


def test_verdict_too_few_pairs_and_real_paired_test():
    assert verdict(paired_test([0.5], [0.4])) == "Too few paired passages to compare A and B (N=1)."
    a = [0.6 + 0.01 * i for i in range(12)]
    b = [v - 0.05 + (0.01 if i % 2 else -0.01) for i, v in enumerate(a)]
    assert verdict(paired_test(a, b), label_a="edit", label_b="base").startswith(
        "edit beats base at N=12: +0.050"
    )


# --- Variance components -------------------------------------------------------------------------------------


def test_variance_components_known_between_variance():
    # Each group {m - 1, m + 1} has variance 2 (within). Group means 2, 6, 10 have variance 16 = between + 2/2,
    # so between = 15 and ICC = 15 / 17. MS_between = 2 * (16 + 0 + 16) / 2 = 32.
    result = variance_components([[1.0, 3.0], [5.0, 7.0], [9.0, 11.0]])
    assert result["n_groups"] == 3 and result["mean_group_size"] == 2.0
    assert result["within"] == 2.0 and result["ms_within"] == 2.0 and result["ms_between"] == 32.0
    assert result["between"] == 15.0
    assert result["icc"] == pytest.approx(15 / 17, abs=1e-4)
    assert json.loads(json.dumps(result)) == result


def test_variance_components_unbalanced_and_singletons():
    # The singleton [20] has no within part; within pools only [1, 3] and [5, 7, 9]: (2 + 8) / (1 + 2) = 10/3.
    # Grand mean (1+3+5+7+9+20)/6 = 7.5; MS_between = (2*5.5^2 + 3*0.5^2 + 1*12.5^2) / 2 = 217.5 / 2 = 108.75;
    # n0 = (6 - (4 + 9 + 1)/6) / 2 = 11/6; between = (108.75 - 10/3) / (11/6) = 57.5; ICC = 57.5 / 60.8333.
    result = variance_components([[1.0, 3.0], [5.0, 7.0, 9.0], [20.0]])
    assert result["n_groups"] == 3 and result["mean_group_size"] == 2.0
    assert result["within"] == pytest.approx(10 / 3, abs=1e-6)
    assert result["ms_between"] == pytest.approx(108.75, abs=1e-6)
    assert result["between"] == pytest.approx(57.5, abs=1e-5)
    assert result["icc"] == pytest.approx(57.5 / (57.5 + 10 / 3), abs=1e-4)


def test_variance_components_negative_estimate_is_clipped():
    # Equal group means: MS_between = 0 < MS_within = (50 + 2) / 2 = 26, so between and ICC are 0.
    result = variance_components([[0.0, 10.0], [4.0, 6.0]])
    assert result["within"] == 26.0 and result["between"] == 0.0 and result["icc"] == 0.0


def test_variance_components_not_computable():
    assert variance_components([]) == {
        "n_groups": 0,
        "mean_group_size": None,
        "between": None,
        "within": None,
        "icc": None,
        "ms_between": None,
        "ms_within": None,
    }
    singletons = variance_components([[0.1], [0.4], [None]])
    assert singletons["n_groups"] == 2 and singletons["within"] is None and singletons["between"] is None
    assert singletons["ms_between"] == pytest.approx(0.045)
    one_group = variance_components([[0.1, 0.3, 0.2]])
    assert (
        one_group["within"] == pytest.approx(0.01)
        and one_group["between"] is None
        and one_group["icc"] is None
    )
