"""Statistics checked against scipy and against cases with a known answer."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from llm_optimizer import stats

RNG = np.random.default_rng(11)
A = RNG.normal(10, 2, 400)
B = RNG.normal(10.5, 3, 300)


def test_welch_matches_scipy_and_cohens_d():
    result = stats.welch_t(A, B, "greater")
    ref = sps.ttest_ind(B, A, equal_var=False, alternative="greater")
    assert result.p_value == pytest.approx(ref.pvalue)
    assert result.statistic == pytest.approx(ref.statistic)
    pooled = math.sqrt((A.var(ddof=1) + B.var(ddof=1)) / 2)
    assert result.effect == pytest.approx((B.mean() - A.mean()) / pooled)


def test_mann_whitney_matches_scipy_and_rank_biserial_is_bounded():
    result = stats.mann_whitney(A, B)
    ref = sps.mannwhitneyu(B, A, alternative="two-sided", method="asymptotic")
    assert result.p_value == pytest.approx(ref.pvalue)
    assert stats.mann_whitney([1, 2, 3], [10, 11, 12], "greater").effect == pytest.approx(1.0)


def test_two_proportion_z_known_answer_and_chi_square_equivalence():
    # 2x2 table: the two-sided pooled z-test equals the chi-square test without continuity correction (z^2 = chi2).
    result = stats.two_proportion_z(40, 1000, 65, 1000)
    chi2, p, _, _ = sps.chi2_contingency([[40, 960], [65, 935]], correction=False)
    assert result.statistic**2 == pytest.approx(chi2)
    assert result.p_value == pytest.approx(p)
    assert result.effect == pytest.approx(0.025)
    with pytest.raises(ValueError, match="n_a=0"):
        stats.two_proportion_z(0, 0, 1, 10)


def test_the_confidence_interval_of_a_difference_matches_scipy():
    diff, low, high = stats.diff_ci(A, B)
    ref = sps.ttest_ind(B, A, equal_var=False).confidence_interval(0.95)
    assert (low, high) == pytest.approx((ref.low, ref.high))
    assert low < diff < high


def test_ks_and_psi():
    assert stats.ks_2samp(A, B).p_value == pytest.approx(sps.ks_2samp(A, B).pvalue)
    same = RNG.normal(0, 1, 5000)
    assert stats.psi(same, RNG.normal(0, 1, 5000)) < 0.02
    assert stats.psi(same, RNG.normal(1, 1, 5000)) > 0.25
    # Known answer: two bins, shares 50/50 -> 80/20: PSI = (0.8-0.5)ln(0.8/0.5) + (0.2-0.5)ln(0.2/0.5).
    expected = np.array([0.0] * 50 + [1.0] * 50)
    actual = np.array([0.0] * 80 + [1.0] * 20)
    known = 0.3 * math.log(0.8 / 0.5) + (-0.3) * math.log(0.2 / 0.5)
    assert stats.psi(expected, actual, bins=2) == pytest.approx(known, rel=1e-4)


def test_mann_kendall_agrees_with_kendall_tau_and_theil_sen_finds_the_slope():
    x = 0.5 * np.arange(60) + RNG.normal(0, 3, 60)
    trend = stats.mann_kendall(x)
    tau = sps.kendalltau(np.arange(60), x)
    assert trend.direction == "increasing"
    # Without ties, Mann-Kendall's S is tau * n(n-1)/2, and the p-values agree closely.
    assert trend.s == pytest.approx(tau.statistic * 60 * 59 / 2)
    assert trend.p_value == pytest.approx(tau.pvalue, rel=0.2, abs=1e-6)
    assert trend.slope_low < 0.5 < trend.slope_high
    assert stats.mann_kendall(RNG.normal(0, 1, 60)).direction in ("none", "increasing", "decreasing")
    assert stats.mann_kendall([3, 3, 3, 3, 3]).direction == "none"


def test_cusum_finds_a_step_and_stays_quiet_without_one():
    flat = RNG.normal(0, 1, 200)
    assert stats.cusum_change_points(flat, threshold=8) == []
    step = np.concatenate([RNG.normal(0, 1, 100), RNG.normal(3, 1, 100)])
    points = stats.cusum_change_points(step, threshold=8)
    assert points and 100 <= points[0] <= 110


def test_outlier_rules_known_answers():
    x = np.array([10, 11, 9, 10, 12, 10, 11, 9, 10, 100.0])
    assert stats.mad_outliers(x).tolist() == [False] * 9 + [True]
    assert stats.iqr_outliers(x).tolist() == [False] * 9 + [True]
    big = np.concatenate([RNG.normal(0, 1, 1000), [12.0]])
    assert stats.zscore_outliers(big)[-1] and stats.zscore_outliers(big)[:-1].sum() < 10


def test_proportion_test_is_fishers_exact_test_on_small_counts_and_the_z_test_otherwise():
    from llm_optimizer.stats import proportion_test, two_proportion_z

    # Four errors in a canary stage of 100 against 1% of 2,000: the z-test calls it significant, Fisher does not.
    small = proportion_test(20, 2000, 4, 100, "greater")
    expected = sps.fisher_exact([[4, 96], [20, 1980]], alternative="greater").pvalue
    assert small.test == "fisher_exact" and small.p_value == pytest.approx(expected)
    assert two_proportion_z(20, 2000, 4, 100, "greater").p_value < 0.005 < 0.02 < small.p_value
    large = proportion_test(200, 20_000, 70, 5000, "greater")
    assert large.test == "two_proportion_z"
    assert large.p_value == pytest.approx(two_proportion_z(200, 20_000, 70, 5000, "greater").p_value)
