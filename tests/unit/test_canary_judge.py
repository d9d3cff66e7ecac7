"""The canary judge, calibrated by simulation with a fixed seed."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as sps

from llm_optimizer.canary_judge import ArmSample, JudgeThresholds, judge, thresholds_for
from llm_optimizer.settings import CanaryThresholds

CANARY_N = 2_000
BASELINE_N = 10_000  # the baseline serves the rest of the traffic: here the canary has about 17%
THRESHOLDS = JudgeThresholds()  # the defaults: error +5%, latency +20%, quality -10%


def arm(rng, n, *, error_rate=0.02, latency_scale=1.0, quality=0.85, cost=0.002) -> ArmSample:
    errors = int(rng.binomial(n, error_rate))
    return ArmSample(
        requests=n,
        errors=errors,
        latencies_ms=rng.lognormal(np.log(800), 0.5, n) * latency_scale,
        quality=rng.binomial(1, quality, n // 2).astype(float),  # half the requests carry a score
        cost_usd=rng.gamma(4, cost / 4, n),
    )


def degraded_share(rng, trials, **canary) -> float:
    hits = 0
    for _ in range(trials):
        verdict = judge(arm(rng, BASELINE_N), arm(rng, CANARY_N, **canary), THRESHOLDS)
        hits += verdict.verdict == "degraded"
    return hits / trials


def test_a_a_comparisons_are_rarely_called_degraded():
    assert degraded_share(np.random.default_rng(1), 1000) <= 0.01


def test_doubled_error_rate_is_caught():
    assert degraded_share(np.random.default_rng(2), 1000, error_rate=0.04) >= 0.95


def test_thirty_percent_slower_is_caught():
    assert degraded_share(np.random.default_rng(3), 1000, latency_scale=1.3) >= 0.95


def test_verdict_names_the_reason_and_all_checks():
    rng = np.random.default_rng(4)
    verdict = judge(arm(rng, BASELINE_N), arm(rng, CANARY_N, quality=0.6), THRESHOLDS)
    assert verdict.verdict == "degraded"
    assert len(verdict.reasons) == 1 and verdict.reasons[0].startswith("quality 0.85")
    assert {c.metric for c in verdict.checks} == {"error_rate", "latency_p95", "quality", "cost_per_request"}
    quality = next(c for c in verdict.checks if c.metric == "quality")
    assert "95% CI" in quality.detail


def test_too_few_requests_is_inconclusive_and_unscored_quality_is_not_judged():
    rng = np.random.default_rng(5)
    small = judge(arm(rng, BASELINE_N), arm(rng, 150), THRESHOLDS)
    assert small.verdict == "inconclusive" and "too few requests" in small.reasons[0]
    unscored = arm(rng, CANARY_N)
    unscored.quality = np.empty(0)
    verdict = judge(arm(rng, BASELINE_N), unscored, THRESHOLDS)
    assert "quality" not in {c.metric for c in verdict.checks}


def test_a_small_but_significant_difference_below_the_threshold_is_healthy():
    # Big samples make a 3% latency rise significant; the 20% threshold keeps it healthy.
    rng = np.random.default_rng(6)
    verdict = judge(arm(rng, 50_000), arm(rng, 50_000, latency_scale=1.03), THRESHOLDS)
    latency = next(c for c in verdict.checks if c.metric == "latency_p95")
    assert latency.p_value < 0.001 and verdict.verdict == "healthy"


def test_thresholds_from_the_policy_the_strategy_and_the_floor():
    derived = thresholds_for(CanaryThresholds(), preset_error_rate_increase=0.02, quality_floor_ratio=0.97)
    assert derived.error_rate_increase == 0.02 and derived.quality_decrease == pytest.approx(0.03)
    own = thresholds_for(
        CanaryThresholds(error_rate_increase=0.1, quality_decrease=0.05), 0.02, quality_floor_ratio=0.8
    )
    assert own.error_rate_increase == 0.1 and own.quality_decrease == 0.05


def test_quality_is_a_non_inferiority_test_against_the_floor_line_checked_against_scipy():
    rng = np.random.default_rng(3)
    base, canary = arm(rng, 4000, quality=0.80), arm(rng, 4000, quality=0.74)
    verdict = judge(base, canary, THRESHOLDS)
    quality = next(c for c in verdict.checks if c.metric == "quality")
    expected = sps.ttest_ind(canary.quality, 0.9 * base.quality, equal_var=False, alternative="less").pvalue
    assert quality.p_value == pytest.approx(expected)
    # -7.5% against a 10% limit: not degraded, although a plain test would call the drop significant.
    assert verdict.verdict == "healthy"


def test_the_promotion_gate_promotes_only_a_canary_credibly_above_the_floor_line():
    rng = np.random.default_rng(4)
    gate = THRESHOLDS.model_copy(update={"promotion_gate": True})
    base = arm(rng, 20_000, quality=0.80)
    # Half a point of quality under the line (0.72 = 0.9 x 0.8): never promoted, however many requests.
    trap = judge(base, arm(rng, 20_000, quality=0.716), gate)
    assert trap.verdict == "inconclusive" and trap.reasons[0].startswith("promotion gate")
    # Four points above it: promoted.
    assert judge(base, arm(rng, 20_000, quality=0.76), gate).verdict == "healthy"
    # Without the gate (earlier stages) the trap's quality is not degraded either: it is not credibly below.
    early = judge(base, arm(rng, 20_000, quality=0.716), THRESHOLDS)
    assert not next(c for c in early.checks if c.metric == "quality").degraded


def test_unknown_costs_are_left_out_not_counted_as_free():
    rng = np.random.default_rng(11)
    baseline, canary = arm(rng, BASELINE_N), arm(rng, CANARY_N, cost=0.003)  # the canary costs 50% more a request
    # Half the canary's requests are streams sent without usage: their cost is unknown (NaN), not 0.
    canary.cost_usd[::2] = np.nan
    verdict = judge(baseline, canary, THRESHOLDS)
    cost = next(c for c in verdict.checks if c.metric == "cost_per_request")
    assert cost.canary == pytest.approx(np.nanmean(canary.cost_usd)) and cost.canary > 0.0025
    assert cost.degraded  # read as free, the unknown half would have made it look 25% cheaper instead
