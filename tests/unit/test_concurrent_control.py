"""Concurrent control: a canary judged over the same moments as its baseline, whatever the service went through."""

from __future__ import annotations

import numpy as np
import pytest

from llm_optimizer.assessment import Samples
from llm_optimizer.canary_judge import ArmSample, JudgeThresholds, judge
from llm_optimizer.concurrent_control import BUCKETS, time_matched

WINDOW = (0.0, 1000.0)
RATE = 10.0  # requests a second, both arms together


def _fleet(rng, *, burst=(700.0, 800.0), burst_errors=0.20, canary_errors=0.024, late_share=0.5):
    """The promotion gate's window: the canary serves 5% for the first half (its exploration and first stage), then
    `late_share`; a service-wide error burst fails `burst_errors` of *every* request during `burst`."""
    n = int(RATE * (WINDOW[1] - WINDOW[0]))
    ts = np.sort(rng.uniform(*WINDOW, n))
    share = np.where(ts < 500, 0.05, late_share)
    on_canary = rng.random(n) < share
    in_burst = (ts >= burst[0]) & (ts < burst[1])
    error_rate = np.where(in_burst, burst_errors, np.where(on_canary, canary_errors, 0.024))
    ok = rng.random(n) >= error_rate
    latency = rng.lognormal(np.log(800), 0.4, n)
    quality = np.where(ok & (rng.random(n) < 0.5), rng.binomial(1, 0.85, n).astype(float), np.nan)
    cost = rng.gamma(4, 0.002 / 4, n)
    arms = []
    for mask in (~on_canary, on_canary):
        arms.append(
            Samples(ts=ts[mask], ok=ok[mask], latency_ms=latency[mask], quality=quality[mask], cost_usd=cost[mask])
        )
    return arms[0], arms[1]


def _verdict(baseline: Samples, canary: Samples, matched: bool):
    if matched:
        m = time_matched(baseline, canary, *WINDOW)
        baseline, canary = m.baseline, m.canary
    return judge(ArmSample.of(baseline), ArmSample.of(canary), JudgeThresholds())


def test_a_service_wide_burst_during_the_last_stage_does_not_roll_back_a_healthy_canary():
    baseline, canary = _fleet(np.random.default_rng(7))
    pooled = _verdict(baseline, canary, matched=False)
    # The defect, reproduced: pooled over the window, the canary's requests sit in the burst far more than the
    # baseline's (0.024 -> 0.05 in the run).
    assert pooled.verdict == "degraded" and any(r.startswith("error_rate") for r in pooled.reasons)
    concurrent = _verdict(baseline, canary, matched=True)
    assert concurrent.verdict == "healthy", concurrent.reasons
    error = next(c for c in concurrent.checks if c.metric == "error_rate")
    assert error.baseline == pytest.approx(error.canary, abs=0.012)


def test_a_canary_worse_at_every_moment_is_still_rolled_back_through_a_burst():
    baseline, canary = _fleet(np.random.default_rng(8), canary_errors=0.06)
    verdict = _verdict(baseline, canary, matched=True)
    assert verdict.verdict == "degraded" and any(r.startswith("error_rate") for r in verdict.reasons)


def test_healthy_canaries_are_rarely_rolled_back_with_a_burst_in_every_window():
    rng = np.random.default_rng(9)
    degraded = sum(_verdict(*_fleet(rng), matched=True).verdict == "degraded" for _ in range(200))
    assert degraded <= 4  # the judge's family-wise alpha is 1%: 2 expected of 200


def test_the_matched_baseline_has_the_canarys_time_profile():
    baseline, canary = _fleet(np.random.default_rng(10))
    m = time_matched(baseline, canary, *WINDOW)
    edges = np.linspace(*WINDOW, BUCKETS + 1)
    base_counts, _ = np.histogram(m.baseline.ts, edges)
    canary_counts, _ = np.histogram(m.canary.ts, edges)
    ratio = base_counts.sum() / canary_counts.sum()
    # One ratio for every span, up to the rounding of a count: the same distribution over time.
    assert np.all(np.abs(base_counts - ratio * canary_counts) <= 1.5)
    assert "baseline sampled to the canary's time profile" in m.note
    # Deterministic: a retried judgement sees the same sample.
    again = time_matched(baseline, canary, *WINDOW)
    assert np.array_equal(again.baseline.ts, m.baseline.ts)


def test_within_one_stage_nearly_all_the_baseline_is_kept():
    rng = np.random.default_rng(11)
    baseline, canary = _fleet(rng, burst_errors=0.024, late_share=0.05)  # 5% throughout
    m = time_matched(baseline, canary, *WINDOW)
    assert len(m.canary.ts) == len(canary.ts)
    assert len(m.baseline.ts) >= 0.5 * len(baseline.ts)


def test_canary_requests_where_the_baseline_served_none_are_left_out_and_said_so():
    ts = np.array([10.0, 20.0, 990.0])
    ok = np.ones(3, dtype=bool)
    vals = np.ones(3)
    canary = Samples(ts=ts, ok=ok, latency_ms=vals, quality=vals, cost_usd=vals)
    base_ts = np.array([15.0, 16.0, 17.0, 18.0])
    baseline = Samples(
        ts=base_ts, ok=np.ones(4, dtype=bool), latency_ms=np.ones(4), quality=np.ones(4), cost_usd=np.ones(4)
    )
    m = time_matched(baseline, canary, *WINDOW)
    assert list(m.canary.ts) == [10.0, 20.0]
    assert len(m.baseline.ts) == 4  # two per canary request: all four
    assert "1 canary requests in spans the baseline did not serve left out" in m.note


def test_an_empty_window_is_refused_by_name():
    with pytest.raises(ValueError, match=r"start=5\.0 end=5\.0"):
        time_matched(Samples.empty(), Samples.empty(), 5.0, 5.0)
