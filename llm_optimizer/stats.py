"""Statistical tests and estimators used by the analyzers, the canary judge and the explorations.

Thin, typed wrappers over scipy where scipy has the test; the rest (PSI, Mann-Kendall, CUSUM, robust outlier
rules) implemented here and checked against known answers in the tests.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike
from scipy import stats as sps

Alternative = Literal["two-sided", "less", "greater"]


@dataclass(frozen=True)
class TestResult:
    """A test's statistic and p-value, with an effect size whose meaning the test names."""

    test: str
    statistic: float
    p_value: float
    effect: float
    effect_name: str

    def as_dict(self) -> dict[str, float | str]:
        return {
            "test": self.test,
            "statistic": _finite(self.statistic),
            "p_value": _finite(self.p_value),
            self.effect_name: _finite(self.effect),
        }


def _finite(x: float) -> float:
    return float(x) if math.isfinite(x) else 0.0


def _array(x: ArrayLike) -> np.ndarray:
    return np.asarray(x, dtype=float)


def welch_t(a: ArrayLike, b: ArrayLike, alternative: Alternative = "two-sided") -> TestResult:
    """Welch's t-test of mean(b) against mean(a); effect: Cohen's d (b - a over the pooled sd)."""
    a, b = _array(a), _array(b)
    result = sps.ttest_ind(b, a, equal_var=False, alternative=alternative)
    pooled = math.sqrt((a.var(ddof=1) + b.var(ddof=1)) / 2) if len(a) > 1 and len(b) > 1 else 0.0
    d = (b.mean() - a.mean()) / pooled if pooled > 0 else 0.0
    return TestResult("welch_t", float(result.statistic), float(result.pvalue), d, "cohens_d")


def mann_whitney(a: ArrayLike, b: ArrayLike, alternative: Alternative = "two-sided") -> TestResult:
    """Mann-Whitney U of b against a; effect: the rank-biserial correlation (positive when b tends larger)."""
    a, b = _array(a), _array(b)
    result = sps.mannwhitneyu(b, a, alternative=alternative, method="asymptotic")
    effect = 2 * result.statistic / (len(a) * len(b)) - 1
    return TestResult("mann_whitney_u", float(result.statistic), float(result.pvalue), effect, "rank_biserial")


def two_proportion_z(
    successes_a: int, n_a: int, successes_b: int, n_b: int, alternative: Alternative = "two-sided"
) -> TestResult:
    """Pooled two-proportion z-test of rate b against rate a; effect: the difference of rates b - a."""
    if n_a <= 0 or n_b <= 0:
        raise ValueError(f"two_proportion_z needs samples on both sides, got n_a={n_a}, n_b={n_b}")
    p_a, p_b = successes_a / n_a, successes_b / n_b
    pooled = (successes_a + successes_b) / (n_a + n_b)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n_a + 1 / n_b))
    z = (p_b - p_a) / se if se > 0 else 0.0
    if alternative == "greater":
        p = sps.norm.sf(z)
    elif alternative == "less":
        p = sps.norm.cdf(z)
    else:
        p = 2 * sps.norm.sf(abs(z))
    return TestResult("two_proportion_z", z, float(p), p_b - p_a, "rate_difference")


def proportion_test(
    successes_a: int, n_a: int, successes_b: int, n_b: int, alternative: Alternative = "two-sided"
) -> TestResult:
    """Rate b against rate a: the z-test where it holds, Fisher's exact test where an expected count is under 5
    (a few errors in a small canary stage: the normal approximation there calls noise significant)."""
    result = two_proportion_z(successes_a, n_a, successes_b, n_b, alternative)
    pooled = (successes_a + successes_b) / (n_a + n_b)
    expected = min(n * rate for n in (n_a, n_b) for rate in (pooled, 1 - pooled))
    if expected >= 5:
        return result
    table = [[successes_b, n_b - successes_b], [successes_a, n_a - successes_a]]
    exact = sps.fisher_exact(table, alternative=alternative)
    return TestResult("fisher_exact", float(exact.statistic), float(exact.pvalue), result.effect, result.effect_name)


def diff_ci(a: ArrayLike, b: ArrayLike, confidence: float = 0.95) -> tuple[float, float, float]:
    """(mean(b) - mean(a), low, high): Welch interval of the difference of means."""
    a, b = _array(a), _array(b)
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    diff = float(b.mean() - a.mean())
    se = math.sqrt(va + vb)
    if se == 0:
        return (diff, diff, diff)
    dof = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    half = sps.t.ppf((1 + confidence) / 2, dof) * se
    return (diff, diff - half, diff + half)


def ks_2samp(a: ArrayLike, b: ArrayLike) -> TestResult:
    """Two-sample Kolmogorov-Smirnov; effect: the D statistic itself."""
    result = sps.ks_2samp(_array(a), _array(b))
    return TestResult("kolmogorov_smirnov", float(result.statistic), float(result.pvalue), float(result.statistic), "d")


def psi(expected: ArrayLike, actual: ArrayLike, bins: int = 10) -> float:
    """Population stability index of `actual` against `expected`, on the expected sample's quantile bins.

    Common reading: < 0.1 stable, 0.1-0.25 moderate shift, > 0.25 significant shift.
    """
    expected, actual = _array(expected), _array(actual)
    edges = np.unique(np.quantile(expected, np.linspace(0, 1, bins + 1)))
    if len(edges) < 2:
        return 0.0
    edges[0], edges[-1] = -np.inf, np.inf
    e = np.histogram(expected, edges)[0] / len(expected)
    a = np.histogram(actual, edges)[0] / len(actual)
    e, a = np.clip(e, 1e-6, None), np.clip(a, 1e-6, None)
    return float(np.sum((a - e) * np.log(a / e)))


@dataclass(frozen=True)
class TrendResult:
    direction: Literal["increasing", "decreasing", "none"]
    s: float
    z: float
    p_value: float
    slope: float  # Theil-Sen, per step
    slope_low: float
    slope_high: float


def mann_kendall(x: ArrayLike, alpha: float = 0.05) -> TrendResult:
    """Mann-Kendall trend test (with the tie correction) and the Theil-Sen slope with its 95% interval."""
    x = _array(x)
    n = len(x)
    if n < 3:
        return TrendResult("none", 0.0, 0.0, 1.0, 0.0, 0.0, 0.0)
    diffs = np.sign(x[None, :] - x[:, None])
    s = float(np.triu(diffs, 1).sum())
    _, counts = np.unique(x, return_counts=True)
    var_s = (n * (n - 1) * (2 * n + 5) - np.sum(counts * (counts - 1) * (2 * counts + 5))) / 18
    z = 0.0 if var_s <= 0 else (s - np.sign(s)) / math.sqrt(var_s)
    p = float(2 * sps.norm.sf(abs(z)))
    slope, _, low, high = sps.theilslopes(x, np.arange(n), alpha=0.95)
    direction: Literal["increasing", "decreasing", "none"] = (
        "none" if p >= alpha else ("increasing" if z > 0 else "decreasing")
    )
    return TrendResult(direction, s, z, p, float(slope), float(low), float(high))


def cusum_change_points(x: ArrayLike, threshold: float = 5.0, drift: float = 0.5) -> list[int]:
    """Indices where a two-sided tabular CUSUM (in units of the series' sd) signals a shift of the mean.

    The reference mean and sd come from the first quarter of the series (at least 5 points), so a change in the
    later part shows up against what came before. After a signal the sums restart.
    """
    x = _array(x)
    if len(x) < 8:
        return []
    head = x[: max(5, len(x) // 4)]
    mean, sd = head.mean(), head.std(ddof=1)
    if sd == 0:
        sd = 1e-12
    z = (x - mean) / sd
    high = low = 0.0
    points = []
    for i, value in enumerate(z):
        high = max(0.0, high + value - drift)
        low = max(0.0, low - value - drift)
        if high > threshold or low > threshold:
            points.append(i)
            high = low = 0.0
    return points


def zscore_outliers(x: ArrayLike, threshold: float = 3.0) -> np.ndarray:
    x = _array(x)
    sd = x.std(ddof=1) if len(x) > 1 else 0.0
    if sd == 0:
        return np.zeros(len(x), dtype=bool)
    return np.abs(x - x.mean()) / sd > threshold


def mad_outliers(x: ArrayLike, threshold: float = 3.5) -> np.ndarray:
    """Modified z-score rule (Iglewicz and Hoaglin): 0.6745 * |x - median| / MAD > threshold."""
    x = _array(x)
    median = np.median(x)
    mad = np.median(np.abs(x - median))
    if mad == 0:
        return np.zeros(len(x), dtype=bool)
    return 0.6745 * np.abs(x - median) / mad > threshold


def iqr_outliers(x: ArrayLike, k: float = 1.5) -> np.ndarray:
    """Tukey's fences: outside [Q1 - k*IQR, Q3 + k*IQR]."""
    x = _array(x)
    q1, q3 = np.percentile(x, [25, 75])
    iqr = q3 - q1
    return (x < q1 - k * iqr) | (x > q3 + k * iqr)
