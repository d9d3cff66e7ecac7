"""Exploration's statistics (checked against scipy and numpy) and how it settles arms, with known answers and by
simulation: candidates clearly above the floor qualify, bad ones leave early, traps just under the floor do not
qualify."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from scipy import stats as sps

from llm_optimizer import memory as memory_rules
from llm_optimizer.decision import Action, Decision, Memory
from llm_optimizer.exploration import (
    ArmResult,
    ArmStats,
    ExplorationPolicy,
    QualityEstimate,
    finished,
    floor_test,
    settle,
    shares,
)

NOW = datetime(2026, 12, 2, 12, tzinfo=UTC)
POLICY = ExplorationPolicy(floor_ratio=0.9, alpha=0.05, min_samples=100, max_samples=5000, min_gain=0.1)


def estimate(sample: np.ndarray) -> QualityEstimate:
    return QualityEstimate(mean=float(sample.mean()), sd=float(sample.std(ddof=1)), n=len(sample))


def test_floor_test_is_welchs_statistic_against_the_scaled_reference():
    rng = np.random.default_rng(1)
    arm, ref = rng.binomial(1, 0.7, 800).astype(float), rng.binomial(1, 0.8, 5000).astype(float)
    expected = sps.ttest_ind(arm, 0.9 * ref, equal_var=False).statistic
    assert floor_test(estimate(arm), estimate(ref), 0.9) == pytest.approx(expected, rel=1e-9)


def test_pooled_estimate_is_the_estimate_of_both_samples_together():
    rng = np.random.default_rng(2)
    a, b = rng.normal(0.7, 0.2, 300), rng.normal(0.75, 0.3, 1200)
    pooled = estimate(a).pooled(estimate(b))
    both = estimate(np.concatenate([a, b]))
    assert pooled.n == both.n and pooled.mean == pytest.approx(both.mean) and pooled.sd == pytest.approx(both.sd)
    assert estimate(a).pooled(QualityEstimate(mean=0, n=0)) == estimate(a)


def arm(key: str, quality: float, n: int, cost: float, sd: float = 0.4, requests: int | None = None) -> ArmStats:
    return ArmStats(
        key=key,
        version=f"v-{key}",
        requests=requests or n,
        quality=QualityEstimate(mean=quality, sd=sd, n=n),
        cost_per_request=cost,
    )


LIVE = arm("live", 0.80, 20_000, 0.010)
REFERENCE = LIVE.quality


def test_arms_are_settled_by_the_test_against_the_floor_and_by_what_they_can_still_win():
    arms = [
        arm("good", 0.76, 1500, 0.002),  # ratio 0.95: 5 points above the floor
        arm("bad", 0.50, 300, 0.001),  # ratio 0.625
        arm("trap", 0.716, 1500, 0.0015),  # ratio 0.895: just under the floor, not credibly
        arm("dearer", 0.78, 200, 0.004),  # cannot beat "good" even at its optimistic quality
        arm("no-saving", 0.80, 200, 0.0105),  # dearer than the live config
    ]
    results = {r.key: r for r in settle(arms, LIVE, REFERENCE, POLICY)}
    assert results["good"].fate == "qualified" and results["good"].quality_ratio == pytest.approx(0.95)
    assert results["bad"].fate == "below_floor"
    # Undecided but able to beat the qualified arm: deferred, so that the qualified one is rolled out first.
    assert results["trap"].fate == "deferred"
    assert results["dearer"].fate == "dominated" and "good" in results["dearer"].reason
    assert results["no-saving"].fate == "no_saving"
    assert finished(list(results.values())) and shares(30, list(results.values())) == {}
    # Without a qualified arm the undecided keep the slice between them.
    open_ = {r.key: r for r in settle([arms[1], arms[2]], LIVE, REFERENCE, POLICY)}
    assert open_["trap"].fate == "exploring" and not finished(list(open_.values()))
    assert shares(30, list(open_.values())) == {"v-trap": 30.0}
    # Out of time (or past max_samples), an arm still undecided is unproven: never promoted on a guess.
    final = settle(arms, LIVE, REFERENCE, POLICY, previous=results, final=True)
    assert {r.key: r.fate for r in final}["trap"] == "unproven"
    assert finished(final) and [r.key for r in final if r.fate == "qualified"] == ["good"]


def test_a_settled_arm_stays_settled_and_errors_take_it_out():
    first = settle([arm("bad", 0.5, 300, 0.001)], LIVE, REFERENCE, POLICY)
    # More data that looks better does not bring it back: its traffic is already gone.
    again = settle([arm("bad", 0.79, 2000, 0.001)], LIVE, REFERENCE, POLICY, previous={r.key: r for r in first})
    assert again[0].fate == "below_floor"
    erring = ArmStats(key="e", version="v-e", requests=500, errors=100, cost_per_request=0.001)
    assert settle([erring], LIVE, REFERENCE, POLICY)[0].fate == "errors"


def test_by_simulation_good_candidates_qualify_and_traps_do_not_over_a_whole_exploration():
    """Bernoulli answers, tested after every round as the workflow does (a look every 100 requests, up to 5,000):
    an arm 3 points above the floor qualifies; a trap half a point under it qualifies in fewer than `alpha` of the
    explorations, although it is looked at fifty times."""
    rng = np.random.default_rng(7)
    reference_q, runs, looks = 0.8, 300, range(100, 5001, 100)
    reference = QualityEstimate(mean=reference_q, sd=0.4, n=50_000)
    policy = POLICY.model_copy(update={"max_samples": 5000})
    qualified = {"good": 0, "trap": 0}
    for _ in range(runs):
        for name, ratio in (("good", 0.93), ("trap", 0.895)):
            answers = np.cumsum(rng.random(looks[-1]) < reference_q * ratio)
            previous: dict[str, ArmResult] = {}
            for n in looks:
                mean = answers[n - 1] / n
                stats_ = ArmStats(
                    key=name,
                    version=name,
                    requests=n,
                    quality=QualityEstimate(mean=mean, sd=float(np.sqrt(mean * (1 - mean))), n=n),
                    cost_per_request=0.001,
                )
                (result,) = settle([stats_], LIVE, reference, policy, previous=previous)
                previous = {name: result}
                if result.fate != "exploring":
                    break
            qualified[name] += result.fate == "qualified"
    assert qualified["good"] / runs > 0.85
    assert qualified["trap"] / runs < POLICY.alpha


def test_the_slice_grows_once_every_open_arm_is_near_the_floor():
    near = ArmResult(key="a", version="va", fate="exploring", reason="", requests=900, ratio_low=0.87)
    far = near.model_copy(update={"key": "b", "version": "vb", "ratio_low": 0.70})
    policy = POLICY.model_copy(update={"max_traffic_percent": 50})
    assert shares(30, [near, far], policy) == {"va": 15.0, "vb": 15.0}
    assert shares(30, [near], policy) == {"va": 50.0}
    assert shares(30, [near]) == {"va": 30.0}


def test_memory_after_an_exploration_keeps_every_arm_and_pools_the_reference():
    decision = Decision(
        decision_id="d",
        service="s",
        made_at=NOW,
        action=Action.experiment,
        rationale="",
        current_version="v1",
        reference_quality=0.8,
        reference=QualityEstimate(mean=0.8, sd=0.4, n=1000),
    )
    memory = memory_rules.after_decision(Memory(), decision, NOW)
    assert memory.reference_version == "v1" and memory.reference.n == 1000
    results = [ArmResult(key="a", version="v2", fate="qualified", reason="", requests=10)]
    live = QualityEstimate(mean=0.9, sd=0.3, n=1000)
    later = memory_rules.after_exploration(memory, results, "v1", live, since=NOW, now=NOW + timedelta(hours=1))
    assert later.explored["a"].result.fate == "qualified" and later.explored["a"].since == NOW
    assert later.reference.n == 2000 and later.reference_quality == pytest.approx(0.85)
    # Once another config is live, its quality is not the reference's: nothing is pooled.
    other = memory_rules.after_exploration(memory, results, "v2", live, since=NOW, now=NOW)
    assert other.reference == memory.reference


def test_memory_after_a_rollout_and_a_rollback():
    memory = memory_rules.after_rollout(Memory(), "cheap", "rolled_back", NOW)
    assert memory.canary_outcomes == {"cheap": (0, 1)} and memory.rolled_back_models == {"cheap": NOW}
    memory = memory_rules.after_rollout(memory, "cheap", "promoted", NOW)
    assert memory.canary_outcomes == {"cheap": (1, 1)} and memory.rollbacks == [NOW]
    assert memory_rules.after_rollback(memory, NOW).rollbacks == [NOW, NOW]


def test_a_deferred_arm_explored_again_keeps_measuring_from_its_first_exploration():
    deferred = ArmResult(key="a", version="v2", fate="deferred", reason="", requests=500)
    memory = memory_rules.after_exploration(Memory(), [deferred], "v1", None, since=NOW, now=NOW + timedelta(hours=1))
    later = NOW + timedelta(hours=5)
    again = memory_rules.after_exploration(
        memory, [deferred.model_copy(update={"fate": "qualified"})], "v1", None, since=later, now=later
    )
    assert again.explored["a"].since == NOW
    # A settled arm explored again (after its retry period) starts afresh.
    settled = memory_rules.after_exploration(
        again, [deferred.model_copy(update={"fate": "below_floor"})], "v1", None, since=later, now=later
    )
    assert settled.explored["a"].since == later
