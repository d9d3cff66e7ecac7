"""What a candidate's measurements say, with their uncertainty: the upper bound of its quality, the confidence that
it keeps the floor, the risk that it is worse on the weighted score, and its expected impact (normal approximations
of the means, the delta method for ratios)."""

from __future__ import annotations

import math

from scipy import stats as sps

from llm_optimizer.decision.models import Impact, Profile
from llm_optimizer.objectives import Objectives, weighted_gain


def quality_upper_bound(profile: Profile) -> float:
    """The upper end of the 95% interval of the mean quality."""
    se = (profile.quality_sd or 0) / math.sqrt(max(profile.quality_n, 1))
    return (profile.quality_mean or 0) + 1.96 * se


def confidence_meets_floor(profile: Profile, floor: float | None) -> float:
    """P(true quality >= floor) under a normal approximation of the mean."""
    if floor is None:
        return 1.0
    se = (profile.quality_sd or 0) / math.sqrt(max(profile.quality_n, 1))
    if se == 0:
        return 1.0 if (profile.quality_mean or 0) >= floor else 0.0
    return float(sps.norm.cdf(((profile.quality_mean or 0) - floor) / se))


def risk_of_worse(current: Profile, candidate: Profile, objectives: Objectives) -> float:
    """P(weighted gain < 0): the probability that `candidate` is worse than `current` on the weighted score, under a
    normal approximation of the weighted gain. Its uncertainty is that of the measured means of cost and quality (the
    delta method on each ratio of two independent means); a value without a spread (a price, a p95) counts as exact.
    """
    total = objectives.cost + objectives.quality + objectives.latency
    gain = weighted_gain(current.outcome, candidate.outcome, objectives)
    variance = 0.0
    for weight, cur, cand, cur_sd, cand_sd, cur_n, cand_n in (
        (
            objectives.cost,
            current.cost_per_request,
            candidate.cost_per_request,
            current.cost_sd,
            candidate.cost_sd,
            current.requests,
            candidate.requests,
        ),
        (
            objectives.quality,
            current.quality_mean if current.quality_known else None,
            candidate.quality_mean if candidate.quality_known else None,
            current.quality_sd,
            candidate.quality_sd,
            current.quality_n,
            candidate.quality_n,
        ),
    ):
        if total == 0 or not cur or not cand:
            continue
        rel_var = 0.0
        if cand_sd is not None and cand_n > 1:
            rel_var += (cand_sd / cand) ** 2 / cand_n
        if cur_sd is not None and cur_n > 1:
            rel_var += (cur_sd / cur) ** 2 / cur_n
        variance += (weight / total * cand / cur) ** 2 * rel_var
    if variance == 0:
        return 0.0 if gain >= 0 else 1.0
    return float(sps.norm.cdf(-gain / math.sqrt(variance)))


def expected_impact(current: Profile, candidate: Profile) -> dict[str, Impact]:
    impact: dict[str, Impact] = {}
    if current.cost_per_request and candidate.cost_per_request is not None:
        change = candidate.cost_per_request / current.cost_per_request - 1
        low = high = None
        if (
            current.requests > 1
            and candidate.requests > 1
            and current.cost_sd is not None
            and candidate.cost_sd is not None
        ):
            # Delta method on the ratio of two independent means.
            ratio = candidate.cost_per_request / current.cost_per_request
            rel_var = (candidate.cost_sd / candidate.cost_per_request) ** 2 / candidate.requests + (
                current.cost_sd / current.cost_per_request
            ) ** 2 / current.requests
            half = 1.96 * ratio * math.sqrt(rel_var)
            low, high = change - half, change + half
        impact["cost_per_request"] = Impact(estimate=change, low=low, high=high)
    live_q, candidate_q = current.known_quality, candidate.known_quality
    if live_q is not None and candidate_q is not None:
        se = math.sqrt(
            (current.quality_sd or 0) ** 2 / current.quality_n + (candidate.quality_sd or 0) ** 2 / candidate.quality_n
        )
        diff = candidate_q - live_q
        impact["quality"] = Impact(estimate=diff, low=diff - 1.96 * se, high=diff + 1.96 * se)
    if current.latency_p95_ms and candidate.latency_p95_ms:
        impact["latency_p95"] = Impact(estimate=candidate.latency_p95_ms / current.latency_p95_ms - 1)
    return impact


def describe_impact(impact: dict[str, Impact]) -> str:
    parts = []
    if "cost_per_request" in impact:
        parts.append(f"cost per request {impact['cost_per_request'].estimate:+.0%}")
    if "quality" in impact:
        q = impact["quality"]
        parts.append(f"quality {q.estimate:+.3f} (95% CI {q.low:+.3f} .. {q.high:+.3f})")
    if "latency_p95" in impact:
        parts.append(f"p95 latency {impact['latency_p95'].estimate:+.0%}")
    return ", ".join(parts) or "impact unknown"
