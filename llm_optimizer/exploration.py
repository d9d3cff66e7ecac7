"""Exploration: measure several candidates at once on a small slice of real traffic, and settle each one.

Every arm of an exploration serves an equal part of the slice (A/B/n) while the live config serves the rest. After
each round every undecided arm is tested against the quality floor, `floor_ratio` x the reference quality, with a
one-sided test at `alpha` each way:
- credibly below the floor: `below_floor`, out of the slice at once (the risk an arm takes is bounded by how long a
  bad arm can stay, which is what the test shortens);
- credibly above it: `qualified`. The test is repeated every round, and a trap just under the floor would
  eventually look good by chance on one of those looks: qualifying takes a level `alpha / REPEATED_LOOKS` (a
  Pocock-like constant boundary; `tests/unit/test_exploration.py` simulates whole explorations to hold the chance of a
  trap qualifying under `alpha`). Leaving for below the floor keeps `alpha`: a wrong exit only costs a saving;
- an arm that cannot beat a qualified arm on the weighted objective even at its optimistic quality is `dominated`,
  and one that cannot beat the live config by the strategy's minimum gain is `no_saving`: neither needs more data;
- an arm still undecided after `max_samples` scored requests (or when the exploration's time is up) is
  `unproven`: it is never promoted on a guess (a trap just under the floor stays out).
As soon as one arm is qualified, the arms still undecided that could beat it are `deferred`: the qualified arm is
rolled out first (its savings should not wait for the hardest arms to be told apart from the floor), and the
deferred ones are explored again later, their evidence pooled across explorations.
Pure functions: the workflow calls them through an activity; tests call them directly.
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from scipy import stats as sps

from llm_optimizer.objectives import Objectives, Outcome, weighted_gain
from llm_optimizer.readable import Tidy

ArmFate = Literal["exploring", "qualified", "below_floor", "dominated", "no_saving", "unproven", "errors", "deferred"]
SETTLED: frozenset[str] = frozenset(
    {"qualified", "below_floor", "dominated", "no_saving", "unproven", "errors", "deferred"}
)
REPEATED_LOOKS = 10
# Fates that let a candidate be explored again: undecided, or beaten only by an arm that may yet fail its canary.
RETRYABLE: frozenset[str] = frozenset({"exploring", "deferred", "dominated"})


class QualityEstimate(BaseModel):
    """A mean with its spread and sample size: enough to test against it and to pool it with more data."""

    model_config = ConfigDict(frozen=True)

    mean: Tidy
    sd: Tidy = 0.0
    n: int = 0

    @property
    def se(self) -> float:
        return self.sd / math.sqrt(self.n) if self.n > 0 else math.inf

    def pooled(self, other: QualityEstimate) -> QualityEstimate:
        """The estimate of both samples together (exact pooled mean and variance)."""
        n = self.n + other.n
        if other.n == 0:
            return self
        if self.n == 0:
            return other
        mean = (self.mean * self.n + other.mean * other.n) / n
        ss = (
            self.sd**2 * max(self.n - 1, 0)
            + other.sd**2 * max(other.n - 1, 0)
            + self.n * (self.mean - mean) ** 2
            + other.n * (other.mean - mean) ** 2
        )
        return QualityEstimate(mean=mean, sd=math.sqrt(ss / max(n - 1, 1)), n=n)


class ArmStats(BaseModel):
    """What one arm (or the live config) served during the exploration."""

    model_config = ConfigDict(frozen=True)

    key: str
    version: str
    requests: int = 0
    errors: int = 0
    quality: QualityEstimate | None = None
    cost_per_request: Tidy | None = None
    tokens_in_mean: Tidy | None = None
    tokens_out_mean: Tidy | None = None
    latency_p95_ms: Tidy | None = None

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0


class ExplorationPolicy(BaseModel):
    """How an exploration settles its arms (see `ExplorationSettings` for the operator's side)."""

    model_config = ConfigDict(frozen=True)

    floor_ratio: float = Field(gt=0, le=1)
    alpha: float = Field(default=0.05, gt=0, lt=0.5)
    min_samples: int = Field(default=100, ge=2)
    max_samples: int = Field(default=20_000, ge=2)
    error_rate_max: float | None = 0.05
    min_gain: float = Field(default=0.0, ge=0)
    cost_weight: float = 0.6
    quality_weight: float = 0.3
    max_traffic_percent: float = Field(default=0.0, ge=0, le=50)
    safe_margin: float = Field(default=0.05, ge=0, le=1)

    @property
    def objectives(self) -> Objectives:
        """The cycle's weights of cost and quality (latency is left to the canary)."""
        return Objectives.model_construct(cost=self.cost_weight, quality=self.quality_weight, latency=0.0)


class ArmResult(BaseModel):
    """One arm's state after a round: its evidence, the test against the floor, its fate and why."""

    model_config = ConfigDict(frozen=True)

    key: str
    version: str
    fate: ArmFate
    reason: str
    requests: int
    quality: QualityEstimate | None = None
    quality_ratio: Tidy | None = None  # arm quality / reference quality
    z_vs_floor: Tidy | None = None
    ratio_low: Tidy | None = None  # one-sided lower bound of quality_ratio at alpha
    cost_per_request: Tidy | None = None
    tokens_in_mean: Tidy | None = None
    tokens_out_mean: Tidy | None = None
    latency_p95_ms: Tidy | None = None


def floor_test(arm: QualityEstimate, reference: QualityEstimate, floor_ratio: float) -> float:
    """z of arm - floor_ratio x reference, with both means' uncertainty (Welch's statistic on the scaled sample)."""
    diff = arm.mean - floor_ratio * reference.mean
    var = (arm.sd**2 / arm.n if arm.n else math.inf) + (
        floor_ratio**2 * reference.sd**2 / reference.n if reference.n else 0.0
    )
    if var == 0:
        return math.inf if diff >= 0 else -math.inf
    return diff / math.sqrt(var)


def _gain_over_live(
    live: ArmStats, live_quality: float | None, cost: float | None, quality: float | None, p: ExplorationPolicy
) -> float:
    """The weighted gain over the live config on cost and quality (latency is the canary's)."""
    return weighted_gain(Outcome(live.cost_per_request, live_quality), Outcome(cost, quality), p.objectives)


def settle(
    arms: list[ArmStats],
    live: ArmStats,
    reference: QualityEstimate,
    policy: ExplorationPolicy,
    *,
    previous: dict[str, ArmResult] | None = None,
    final: bool = False,
) -> list[ArmResult]:
    """Every arm's fate after this round. `previous` keeps arms settled for good (below the floor, no saving,
    errors, unproven) settled; `final`: time is up."""
    previous = previous or {}
    z_crit = float(sps.norm.ppf(1 - policy.alpha))
    z_qualify = float(sps.norm.ppf(1 - policy.alpha / REPEATED_LOOKS))
    live_quality = live.quality.mean if live.quality else None
    results: dict[str, ArmResult] = {}
    for arm in arms:
        prior = previous.get(arm.key)
        base = dict(
            key=arm.key,
            version=arm.version,
            requests=arm.requests,
            quality=arm.quality,
            cost_per_request=arm.cost_per_request,
            tokens_in_mean=arm.tokens_in_mean,
            tokens_out_mean=arm.tokens_out_mean,
            latency_p95_ms=arm.latency_p95_ms,
        )
        z = ratio = low = None
        if arm.quality is not None and arm.quality.n >= 2 and reference.mean > 0:
            z = floor_test(arm.quality, reference, policy.floor_ratio)
            ratio = arm.quality.mean / reference.mean
            low = (arm.quality.mean - z_crit * arm.quality.se) / reference.mean
        base.update(z_vs_floor=None if z is None else _round(z), quality_ratio=None if ratio is None else _round(ratio))
        if prior is not None and prior.fate in SETTLED and prior.fate not in ("qualified", *RETRYABLE):
            results[arm.key] = prior.model_copy(update=base)
            continue
        if low is not None:
            base["ratio_low"] = _round(low)
        fate, reason = _arm_fate(arm, z, ratio, (z_crit, z_qualify), live, live_quality, policy, final)
        results[arm.key] = ArmResult(fate=fate, reason=reason, **base)
    _drop_dominated(results, live, live_quality, z_crit, policy)
    if not final and any(r.fate == "qualified" for r in results.values()):
        for key, r in list(results.items()):
            if r.fate == "exploring":
                results[key] = r.model_copy(
                    update={"fate": "deferred", "reason": f"a qualified arm is rolled out first; {r.reason}"}
                )
    return [results[a.key] for a in arms]


def _arm_fate(arm, z, ratio, z_levels, live, live_quality, policy, final) -> tuple[ArmFate, str]:
    z_crit, z_qualify = z_levels
    n = arm.quality.n if arm.quality else 0
    if (
        policy.error_rate_max is not None
        and arm.requests >= policy.min_samples
        and arm.error_rate > policy.error_rate_max
    ):
        return "errors", f"error rate {arm.error_rate:.1%} > {policy.error_rate_max:.1%}"
    optimistic = _optimistic_quality(arm, z_crit)
    best_gain = _gain_over_live(live, live_quality, arm.cost_per_request, optimistic, policy)
    if arm.cost_per_request is not None and arm.requests >= min(policy.min_samples, 30) and best_gain < policy.min_gain:
        return "no_saving", (
            f"cost {arm.cost_per_request:.3g}/request against {live.cost_per_request or 0:.3g} live: weighted gain "
            f"at best {best_gain:+.1%} (minimum {policy.min_gain:.0%})"
        )
    if z is None or n < policy.min_samples:
        return ("unproven", f"only {n} scored requests when time ran out") if final else ("exploring", f"{n} scored")
    floor_note = f"quality ratio {ratio:.3f} vs floor {policy.floor_ratio:.3f} (z {z:+.2f}, n {n})"
    if z <= -z_crit:
        return "below_floor", f"credibly below the floor: {floor_note}"
    if z >= z_qualify:
        return "qualified", f"credibly above the floor: {floor_note}"
    if n >= policy.max_samples or final:
        return "unproven", f"not shown to keep the floor after {n} scored requests: {floor_note}"
    return "exploring", floor_note


def _optimistic_quality(arm: ArmStats | ArmResult, z_crit: float) -> float | None:
    if arm.quality is None or arm.quality.n < 2:
        return None  # unknown quality counts as unchanged in the weighted gain
    return arm.quality.mean + z_crit * arm.quality.se


def _mean(arm: ArmResult) -> float:
    assert arm.quality is not None, "a qualified arm always has a quality estimate"
    return arm.quality.mean


def _drop_dominated(results: dict[str, ArmResult], live, live_quality, z_crit, policy) -> None:
    """An arm still exploring (or qualified) that cannot beat the best qualified arm even at its optimistic
    quality needs no more traffic."""
    qualified = [r for r in results.values() if r.fate == "qualified"]
    if not qualified:
        return
    best = max(
        qualified,
        key=lambda r: _gain_over_live(live, live_quality, r.cost_per_request, _mean(r), policy),
    )
    best_gain = _gain_over_live(live, live_quality, best.cost_per_request, _mean(best), policy)
    for key, r in list(results.items()):
        if key == best.key or r.fate not in ("exploring", "qualified") or r.cost_per_request is None:
            continue
        optimistic = _optimistic_quality(r, z_crit)
        gain = _gain_over_live(live, live_quality, r.cost_per_request, optimistic, policy)
        if gain < best_gain:
            results[key] = r.model_copy(
                update={
                    "fate": "dominated",
                    "reason": f"cannot beat {best.key} (weighted gain {gain:+.1%} at best against {best_gain:+.1%})",
                }
            )


def finished(results: list[ArmResult]) -> bool:
    return all(r.fate in SETTLED for r in results)


def shares(total_percent: float, arms: list[ArmResult], policy: ExplorationPolicy | None = None) -> dict[str, float]:
    """The slice split equally among the arms still exploring (version -> percent of all traffic). Once every open
    arm is measured and its quality credibly within `policy.safe_margin` of the floor, the slice may grow to
    `policy.max_traffic_percent`: what is left to tell apart costs little quality, and more traffic settles it
    sooner."""
    open_arms = [r for r in arms if r.fate == "exploring"]
    if not open_arms:
        return {}
    total = total_percent
    if policy is not None and all(
        r.ratio_low is not None and r.ratio_low >= policy.floor_ratio - policy.safe_margin for r in open_arms
    ):
        total = max(total_percent, policy.max_traffic_percent)
    each = round(total / len(open_arms), 4)
    return {r.version: each for r in open_arms}


def _round(x: float) -> float:
    return round(x, 4) if math.isfinite(x) else (1e9 if x > 0 else -1e9)
