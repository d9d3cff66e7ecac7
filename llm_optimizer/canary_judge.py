"""The canary judge: is the canary worse than the baseline over the same period? Used at every rollout stage.

A metric is degraded only when a one-sided test says so at its share of the family-wise `alpha` (Bonferroni over
the four metrics) AND the point estimate is past the operator's threshold: significance alone would roll back
harmless differences on large samples, a threshold alone would roll back noise on small ones.

Quality is held to the floor itself: the test is whether the canary's quality is credibly below (1 - limit) x the
baseline's (a non-inferiority test with the limit as its margin), and the last stage before promotion is a gate:
a canary is promoted only once its quality is credibly above that line (the same test the other way, at `alpha`),
so a candidate a fraction of a point under the floor does not go live on a lucky sample.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict

from llm_optimizer.assessment import Samples
from llm_optimizer.readable import Tidy
from llm_optimizer.settings import CanaryThresholds
from llm_optimizer.stats import diff_ci, mann_whitney, proportion_test, welch_t

METRICS = ("error_rate", "latency_p95", "quality", "cost_per_request")
MIN_QUALITY_SCORES = 30  # fewer scored requests than this on a side: quality is not judged


@dataclass
class ArmSample:
    """What one side served during the stage. Latencies of all requests; costs where known (NaN: unknown usage or
    an unpriced model, left out by the judge); quality where scored."""

    requests: int
    errors: int
    latencies_ms: np.ndarray = field(default_factory=lambda: np.empty(0))
    quality: np.ndarray = field(default_factory=lambda: np.empty(0))
    cost_usd: np.ndarray = field(default_factory=lambda: np.empty(0))

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0

    @classmethod
    def of(cls, seen: Samples) -> ArmSample:
        return cls(
            requests=len(seen.ts),
            errors=int((~seen.ok).sum()),
            latencies_ms=seen.ok_latency,
            quality=seen.known_quality,
            cost_usd=seen.cost_usd[~np.isnan(seen.cost_usd)],
        )


class JudgeThresholds(BaseModel):
    model_config = ConfigDict(frozen=True)

    error_rate_increase: float = 0.05
    latency_increase: float = 0.20
    quality_decrease: float = 0.10
    cost_increase: float = 0.25
    min_samples: int = 200
    alpha: float = 0.01
    # The last judged stage: a quality estimate below the floor line makes the verdict inconclusive (more data, then
    # a rollback if it stays there), so a candidate just under the floor never goes live.
    promotion_gate: bool = False


def thresholds_for(
    policy: CanaryThresholds, preset_error_rate_increase: float, quality_floor_ratio: float
) -> JudgeThresholds:
    """The judge's thresholds from the operator's canary policy: an unset error-rate limit is the strategy's, and the
    quality limit is the stricter of the policy's and what the quality floor allows."""
    return JudgeThresholds(
        error_rate_increase=policy.error_rate_increase
        if policy.error_rate_increase is not None
        else preset_error_rate_increase,
        latency_increase=policy.latency_increase,
        quality_decrease=min(policy.quality_decrease, round(1 - quality_floor_ratio, 6)),
        cost_increase=policy.cost_increase,
        min_samples=policy.min_samples,
        alpha=policy.alpha,
    )


class MetricCheck(BaseModel):
    model_config = ConfigDict(frozen=True)

    metric: str
    baseline: Tidy
    canary: Tidy
    relative_change: Tidy
    threshold: Tidy
    test: str
    p_value: Tidy
    degraded: bool
    detail: str = ""


class CanaryVerdict(BaseModel):
    model_config = ConfigDict(frozen=True)

    verdict: Literal["healthy", "degraded", "inconclusive"]
    reasons: list[str]
    checks: list[MetricCheck]
    baseline_requests: int
    canary_requests: int
    # Inconclusive because the stage's window had not landed when it was judged (docs/architecture.md "Complete
    # windows"): the stage is extended without using an extension meant for too little evidence.
    data_late: bool = False
    # How the arms were made comparable over the same moments (llm_optimizer/concurrent_control.py).
    comparison: str = ""


def late(reason: str, baseline_requests: int = 0, canary_requests: int = 0) -> CanaryVerdict:
    """The verdict of a stage whose data is late: `inconclusive: data late`, never evidence either way."""
    return CanaryVerdict(
        verdict="inconclusive",
        reasons=[f"data late: {reason}"],
        checks=[],
        baseline_requests=baseline_requests,
        canary_requests=canary_requests,
        data_late=True,
    )


def judge(baseline: ArmSample, canary: ArmSample, thresholds: JudgeThresholds) -> CanaryVerdict:
    """Compare the canary with the baseline; the verdict names every reason for a rollback."""
    sizes = {"baseline_requests": baseline.requests, "canary_requests": canary.requests}
    if min(baseline.requests, canary.requests) < thresholds.min_samples:
        return CanaryVerdict(
            verdict="inconclusive",
            reasons=[
                f"too few requests to judge: baseline {baseline.requests}, canary {canary.requests} "
                f"(at least {thresholds.min_samples} each)"
            ],
            checks=[],
            **sizes,
        )
    alpha = thresholds.alpha / len(METRICS)
    measured = [
        _error_rate(baseline, canary, thresholds.error_rate_increase, alpha),
        _latency(baseline, canary, thresholds.latency_increase, alpha),
        _quality(baseline, canary, thresholds.quality_decrease, alpha),
        _cost(baseline, canary, thresholds.cost_increase, alpha),
    ]
    checks = [c for c in measured if c is not None]
    degraded = [c for c in checks if c.degraded]
    if degraded:
        return CanaryVerdict(verdict="degraded", reasons=[_reason(c) for c in degraded], checks=checks, **sizes)
    quality = next((c for c in checks if c.metric == "quality"), None)
    # The quality check's p-value is of "below the line"; credibly above it is the other tail.
    if thresholds.promotion_gate and quality is not None and 1 - quality.p_value >= thresholds.alpha:
        return CanaryVerdict(
            verdict="inconclusive",
            reasons=[
                f"promotion gate: quality {quality.baseline:.4g} -> {quality.canary:.4g} "
                f"({quality.relative_change:+.2%}) is not yet credibly above the floor line "
                f"({-thresholds.quality_decrease:+.2%}; p={1 - quality.p_value:.2g}, needs < {thresholds.alpha:g}): "
                "not promoted on this evidence"
            ],
            checks=checks,
            **sizes,
        )
    return CanaryVerdict(verdict="healthy", reasons=[], checks=checks, **sizes)


def _reason(check: MetricCheck) -> str:
    return (
        f"{check.metric} {check.baseline:.4g} -> {check.canary:.4g} ({check.relative_change:+.1%}, "
        f"limit {check.threshold:+.0%}, {check.test} p={check.p_value:.2g})"
    )


def _relative(base: float, new: float) -> float:
    if base == 0:
        return 0.0 if new == 0 else float("inf")
    return (new - base) / abs(base)


def _error_rate(baseline: ArmSample, canary: ArmSample, threshold: float, alpha: float) -> MetricCheck:
    test = proportion_test(baseline.errors, baseline.requests, canary.errors, canary.requests, "greater")
    change = _relative(baseline.error_rate, canary.error_rate)
    return MetricCheck(
        metric="error_rate",
        baseline=baseline.error_rate,
        canary=canary.error_rate,
        relative_change=min(change, 1e9),
        threshold=threshold,
        test=test.test,
        p_value=test.p_value,
        degraded=test.p_value < alpha and change > threshold,
    )


def _latency(baseline: ArmSample, canary: ArmSample, threshold: float, alpha: float) -> MetricCheck | None:
    if len(baseline.latencies_ms) < 2 or len(canary.latencies_ms) < 2:
        return None
    test = mann_whitney(baseline.latencies_ms, canary.latencies_ms, "greater")
    base_p95 = float(np.percentile(baseline.latencies_ms, 95))
    canary_p95 = float(np.percentile(canary.latencies_ms, 95))
    change = _relative(base_p95, canary_p95)
    return MetricCheck(
        metric="latency_p95",
        baseline=base_p95,
        canary=canary_p95,
        relative_change=change,
        threshold=threshold,
        test=test.test,
        p_value=test.p_value,
        degraded=test.p_value < alpha and change > threshold,
    )


def _quality(baseline: ArmSample, canary: ArmSample, threshold: float, alpha: float) -> MetricCheck | None:
    if min(len(baseline.quality), len(canary.quality)) < MIN_QUALITY_SCORES:
        return None
    # Non-inferiority: is the canary credibly below (1 - threshold) x the baseline? Welch's test of the canary against
    # the scaled baseline sample, whose mean and variance are exactly those of the floor line.
    test = welch_t((1 - threshold) * baseline.quality, canary.quality, "less")
    diff, low, high = diff_ci(baseline.quality, canary.quality)
    base, new = float(baseline.quality.mean()), float(canary.quality.mean())
    change = _relative(base, new)
    p_value = test.p_value if np.isfinite(test.p_value) else (0.0 if change < -threshold else 1.0)
    return MetricCheck(
        metric="quality",
        baseline=base,
        canary=new,
        relative_change=change,
        threshold=-threshold,
        test=test.test + " (non-inferiority)",
        p_value=p_value,
        degraded=p_value < alpha and change < -threshold,
        detail=f"difference {diff:+.4f} (95% CI {low:+.4f} .. {high:+.4f})",
    )


def _cost(baseline: ArmSample, canary: ArmSample, threshold: float, alpha: float) -> MetricCheck | None:
    # An unknown cost is missing data, not a free request: only known costs are compared.
    base_costs = baseline.cost_usd[np.isfinite(baseline.cost_usd)]
    new_costs = canary.cost_usd[np.isfinite(canary.cost_usd)]
    if len(base_costs) < 2 or len(new_costs) < 2:
        return None
    test = welch_t(base_costs, new_costs, "greater")
    base, new = float(base_costs.mean()), float(new_costs.mean())
    change = _relative(base, new)
    return MetricCheck(
        metric="cost_per_request",
        baseline=base,
        canary=new,
        relative_change=min(change, 1e9),
        threshold=threshold,
        test=test.test,
        p_value=test.p_value if np.isfinite(test.p_value) else 1.0,
        degraded=bool(np.isfinite(test.p_value)) and test.p_value < alpha and change > threshold,
    )
