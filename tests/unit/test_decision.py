"""The decision engine: safety first, guards, constraints, Pareto frontier (property-based), weighted choice."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from helpers.decisions import CURRENT, NOW, inp
from hypothesis import given
from hypothesis import strategies as st

from llm_optimizer.decision import (
    Action,
    Constraints,
    ExploredArm,
    Guards,
    Memory,
    Objectives,
    Profile,
    decide,
    risk_of_worse,
)
from llm_optimizer.exploration import ArmResult
from llm_optimizer.objectives import Outcome, pareto_frontier, weighted_gain
from llm_optimizer.strategies import PRESETS, Strategy


def observed(
    model: str, *, quality: float, cost: float, p95: float = 1500, n: int = 4000, errors: float = 0.01
) -> Profile:
    return Profile(
        model=model,
        provider="p",
        requests=n,
        error_rate=errors,
        latency_p95_ms=p95,
        quality_mean=quality,
        quality_sd=0.3,
        quality_n=n,
        cost_per_request=cost,
        cost_sd=cost * 0.4,
    )


def test_nothing_better_means_nothing_deployed():
    decision = decide(inp(candidates=[observed("pricey", quality=0.91, cost=0.02)]))
    assert decision.action is Action.none
    assert any(c.name == "improvement of pricey" and not c.passed for c in decision.checks)


def test_a_cheaper_candidate_above_the_floor_is_canaried_with_expected_impact():
    decision = decide(inp(candidates=[observed("small", quality=0.89, cost=0.002)]))
    assert decision.action is Action.canary and decision.candidate.model == "small"
    cost = decision.expected_impact["cost_per_request"]
    assert cost.estimate == -0.8 and cost.low < -0.8 < cost.high
    assert decision.confidence > 0.99 and "quality" in decision.expected_impact


def test_a_candidate_below_the_quality_floor_is_never_proposed():
    decision = decide(inp(candidates=[observed("tiny", quality=0.70, cost=0.0005)]))
    assert decision.action is Action.none
    assert any("below the floor" in c.detail for c in decision.checks if c.name == "candidate tiny")


def test_safety_first_an_unsafe_live_config_rolls_back_to_its_parent():
    bad = CURRENT.model_copy(update={"error_rate": 0.2})
    decision = decide(inp(current=bad))
    assert decision.action is Action.rollback and decision.target_version == "v1"
    backup = decide(inp(current=bad, candidates=[observed("small", quality=0.89, cost=0.002)]))
    assert backup.action is Action.canary and "backup model small" in backup.rationale
    no_parent = decide(inp(current=bad, parent_version=None))
    assert no_parent.action is Action.alert
    critical = decide(inp(critical_findings=["Sentinel: critical quality_collapse"]))
    assert critical.action is Action.rollback


def test_guards_cooldown_rollback_budget_and_recently_rolled_back_models():
    candidates = [observed("small", quality=0.89, cost=0.002)]
    cooling = decide(inp(candidates=candidates, memory=Memory(last_change_at=NOW - timedelta(minutes=5))))
    assert cooling.action is Action.none and "cooldown" in cooling.rationale
    budget = decide(inp(candidates=candidates, memory=Memory(rollbacks=[NOW - timedelta(hours=h) for h in (1, 2, 3)])))
    assert budget.action is Action.none and "3 rollbacks" in budget.rationale
    retry = decide(inp(candidates=candidates, memory=Memory(rolled_back_models={"small": NOW - timedelta(hours=2)})))
    assert retry.action is Action.none
    later = decide(
        inp(
            candidates=candidates,
            memory=Memory(rolled_back_models={"small": NOW - timedelta(days=2)}),
            guards=Guards(rolled_back_retry_after=timedelta(days=1)),
        )
    )
    assert later.action is Action.canary


def test_governance_and_unobserved_exploration():
    unobserved = Profile(model="new", provider="q", cost_per_request=0.001)
    explored = decide(inp(candidates=[unobserved]))
    # A single unmeasured candidate too is measured in the exploration slice (a bounded share), never by a canary.
    assert explored.action is Action.experiment and explored.exploration and explored.confidence is None
    assert [a.model for a in explored.arms] == ["new"] and explored.candidate is None
    assert [(f.key, f.fate) for f in explored.candidates] == [(unobserved.key, "exploring")]
    assert decide(inp(candidates=[unobserved], guards=Guards(explore_unobserved=False))).action is Action.none
    denied = decide(inp(candidates=[unobserved], constraints=Constraints(denied_providers=["q"])))
    assert denied.action is Action.none
    unapproved = decide(inp(candidates=[unobserved], constraints=Constraints(approved_models=["big"])))
    assert unapproved.action is Action.none


def test_exploration_goes_to_the_unobserved_model_with_the_better_canary_record():
    cheapest = Profile(model="cheapest", provider="q", cost_per_request=0.001)
    cheaper = Profile(model="cheaper", provider="q", cost_per_request=0.002)
    record = Memory(canary_outcomes={"cheapest": (0, 20), "cheaper": (20, 0)})
    one_arm = Guards(explore_max_arms=1)
    for hour in range(10):  # a different seeded draw each time: the record decides, not the luck of one draw
        explored = decide(
            inp(now=NOW.replace(hour=hour), candidates=[cheapest, cheaper], memory=record, guards=one_arm)
        )
        assert explored.exploration and [a.model for a in explored.arms] == ["cheaper"]
        waiting = next(f for f in explored.candidates if f.key == "cheapest")
        assert waiting.fate == "skipped" and "at most 1 arms" in waiting.reason
    draws = next(c for c in explored.checks if c.name == "exploration order (Thompson sampling)")
    assert draws.detail.startswith("cheaper ")
    # Never tried either: both get their turn across decisions.
    chosen = {
        decide(inp(now=NOW.replace(hour=h), candidates=[cheapest, cheaper], guards=one_arm)).arms[0].model
        for h in range(20)
    }
    assert chosen == {"cheapest", "cheaper"}


def test_several_unmeasured_candidates_are_explored_at_once_and_every_candidate_has_a_fate():
    arms = [Profile(model=f"m{i}", provider="q", cost_per_request=0.001 * (i + 1)) for i in range(4)]
    unpriced = Profile(model="mystery", provider="selfhost")  # no price source knows it
    denied = Profile(model="denied", provider="bad", cost_per_request=0.001)
    dear = Profile(model="dear", provider="q", cost_per_request=0.02)  # dearer than the live config
    decision = decide(
        inp(candidates=[*arms, unpriced, denied, dear], constraints=Constraints(denied_providers=["bad"]))
    )
    assert decision.action is Action.experiment and decision.exploration
    assert {a.key for a in decision.arms} == {"m0", "m1", "m2", "m3", "mystery"}
    fates = {f.key: f for f in decision.candidates}
    assert set(fates) == {"m0", "m1", "m2", "m3", "mystery", "denied", "dear"}
    assert fates["denied"].fate == "skipped" and "provider bad is denied" in fates["denied"].reason
    assert fates["dear"].fate == "skipped" and "weighted gain" in fates["dear"].reason
    assert all(fates[k].fate == "exploring" for k in ("m0", "mystery"))
    # Unpriced candidates are left out, with the reason, when their exploration is disabled.
    strict = decide(inp(candidates=[unpriced], guards=Guards(explore_unpriced=False)))
    assert strict.action is Action.none
    assert "exploration of unpriced candidates is disabled" in strict.candidates[0].reason


def test_an_explored_candidate_below_the_floor_is_not_tried_again_before_the_retry_period():
    arm = Profile(model="trap", provider="q", cost_per_request=0.001)
    result = ArmResult(key="trap", version="v9", fate="below_floor", reason="credibly below the floor", requests=900)
    memory = Memory(explored={"trap": ExploredArm(at=NOW - timedelta(hours=1), result=result)})
    decision = decide(inp(candidates=[arm], memory=memory))
    assert decision.action is Action.none
    assert "below_floor" in decision.candidates[0].reason
    later = decide(inp(candidates=[arm], memory=memory, now=NOW + timedelta(days=2)))
    assert later.action is Action.experiment  # explored before: measured again by exploration, never a bare canary


def test_conservative_needs_more_improvement_than_aggressive():
    candidates = [observed("mid", quality=0.90, cost=0.0085)]  # 15% cheaper -> weighted gain ~9%
    assert decide(inp(candidates=candidates, preset=PRESETS[Strategy.aggressive])).action is Action.canary
    assert decide(inp(candidates=candidates, preset=PRESETS[Strategy.conservative])).action is Action.none


def test_weighted_gain_known_answer():
    candidate = observed("x", quality=0.99, cost=0.005, p95=1000)
    # cost -50% (gain .5), quality +10% (gain .1), latency -50% (gain .5); weights .6/.3/.1
    assert weighted_gain(CURRENT.outcome, candidate.outcome, Objectives()) == pytest.approx(
        0.6 * 0.5 + 0.3 * 0.1 + 0.1 * 0.5
    )


profiles = st.lists(
    st.builds(
        lambda i, c, q, p95: observed(f"m{i}", quality=q, cost=c, p95=p95),
        st.integers(0, 10_000),
        st.floats(0.0001, 1.0),
        st.floats(0.0, 1.0),
        st.floats(10, 10_000),
    ),
    min_size=1,
    max_size=12,
)


def outcome_of(p: Profile) -> Outcome:
    return p.outcome


def dominates(a: Profile, b: Profile) -> bool:
    no_worse = (
        a.cost_per_request <= b.cost_per_request
        and a.quality_mean >= b.quality_mean
        and a.latency_p95_ms <= b.latency_p95_ms
    )
    better = (
        a.cost_per_request < b.cost_per_request
        or a.quality_mean > b.quality_mean
        or a.latency_p95_ms < b.latency_p95_ms
    )
    return no_worse and better


@given(profiles)
def test_pareto_frontier_is_exactly_the_non_dominated_set(items):
    frontier = pareto_frontier(items, outcome_of)
    for p in items:
        dominated = any(dominates(o, p) for o in items)
        assert (p in frontier) == (not dominated)
    assert frontier, "a non-empty set always has a non-dominated member"


@given(profiles, st.floats(0.0001, 1.0))
def test_cheapening_a_frontier_member_keeps_it_on_the_frontier(items, factor):
    member = pareto_frontier(items, outcome_of)[0]
    cheaper = member.model_copy(update={"cost_per_request": member.cost_per_request * factor})
    assert cheaper in pareto_frontier([cheaper if p is member else p for p in items], outcome_of)


def test_a_latency_breach_moves_to_an_observed_backup_that_meets_the_limits():
    slow = CURRENT.model_copy(update={"latency_p95_ms": 6000})
    limits = Constraints(p95_latency_max_ms=3000)
    fast = observed("fast", quality=0.89, cost=0.012, p95=1200)
    also_slow = observed("also-slow", quality=0.95, cost=0.001, p95=5000)
    decision = decide(inp(current=slow, constraints=limits, candidates=[fast, also_slow]))
    assert decision.action is Action.canary and decision.candidate.model == "fast"
    assert "backup model fast" in decision.rationale
    # No backup meets the limit: back to the parent.
    assert decide(inp(current=slow, constraints=limits, candidates=[also_slow])).action is Action.rollback
    # A quality breach is never answered with a backup: roll back.
    poor = CURRENT.model_copy(update={"quality_mean": 0.5})
    assert decide(inp(current=poor, candidates=[fast])).action is Action.rollback


def test_over_the_daily_budget_any_cheaper_model_above_the_floor_is_taken():
    slightly_cheaper = observed("slightly", quality=0.90, cost=0.0095)  # 5% cheaper: not enough normally
    assert decide(inp(candidates=[slightly_cheaper])).action is Action.none
    # 60 USD by noon forecasts 120 USD against a budget of 100.
    noon = NOW.replace(hour=12)
    over = decide(
        inp(
            now=noon, candidates=[slightly_cheaper], spent_today_usd=60.0, constraints=Constraints(daily_budget_usd=100)
        )
    )
    assert over.action is Action.canary and over.candidate.model == "slightly"
    budget = next(c for c in over.checks if c.name == "budget")
    assert not budget.passed and "forecast 120.00 USD today" in budget.detail
    within = decide(
        inp(
            now=noon, candidates=[slightly_cheaper], spent_today_usd=40.0, constraints=Constraints(daily_budget_usd=100)
        )
    )
    assert within.action is Action.none


def test_over_the_monthly_budget_cost_becomes_the_only_objective():
    slightly_cheaper = observed("slightly", quality=0.90, cost=0.0095)
    # On the 16th at 00:00, 1,650 USD in 15 days forecasts 3,410 USD over 31 days, against 3,000.
    mid_month = datetime(2026, 12, 16, tzinfo=UTC)
    monthly = dict(now=mid_month, candidates=[slightly_cheaper], constraints=Constraints(monthly_budget_usd=3000))
    over = decide(inp(spent_today_usd=0.0, spent_month_usd=1650.0, **monthly))
    assert over.action is Action.canary
    assert "3410.00 USD this month against 3000.00" in next(c for c in over.checks if c.name == "budget").detail
    within = decide(inp(spent_today_usd=0.0, spent_month_usd=1200.0, **monthly))
    assert within.action is Action.none


def test_an_alert_is_not_repeated_within_the_cooldown():
    bad = CURRENT.model_copy(update={"error_rate": 0.2})
    first = decide(inp(current=bad, parent_version=None))
    assert first.action is Action.alert
    again = decide(inp(current=bad, parent_version=None, memory=Memory(last_alert_at=NOW - timedelta(minutes=5))))
    assert again.action is Action.none and "alerted at" in again.rationale
    later = decide(inp(current=bad, parent_version=None, memory=Memory(last_alert_at=NOW - timedelta(hours=2))))
    assert later.action is Action.alert


def test_governance_denies_arms_of_an_exploration_one_by_one():
    from llm_optimizer.decision import GovernanceVerdict, apply_governance_to_arms

    arms = [Profile(model=f"m{i}", provider="q") for i in range(2)]
    decision = decide(inp(candidates=arms))
    assert decision.action is Action.experiment
    one = apply_governance_to_arms(decision, {"m0": GovernanceVerdict(approved=False, rationale="not vetted")})
    assert [a.key for a in one.arms] == ["m1"]
    assert next(f for f in one.candidates if f.key == "m0").reason == "governance denied it: not vetted"
    both = apply_governance_to_arms(
        decision, {k: GovernanceVerdict(approved=False, rationale="no") for k in ("m0", "m1")}
    )
    assert both.action is Action.none and both.arms == []


def test_a_candidate_more_likely_worse_than_the_strategy_allows_is_not_chosen():
    # Cost is the only objective; the live cost is exact, the candidate's is the mean of 64 requests with a CV of 2:
    # the gain 1 - 0.008/0.010 = 0.2 has a standard error of 0.8 * 2 / sqrt(64) = 0.2, so P(worse) = Phi(-1).
    current = CURRENT.model_copy(update={"cost_sd": 0.0})
    noisy = Profile(
        model="cheap",
        provider="p",
        requests=64,
        error_rate=0.01,
        latency_p95_ms=1500,
        quality_mean=0.9,
        quality_sd=0.3,
        quality_n=64,
        cost_per_request=0.008,
        cost_sd=0.016,
    )
    cost_only = Objectives(cost=1, quality=0, latency=0)
    assert risk_of_worse(current, noisy, cost_only) == pytest.approx(0.158655, abs=1e-6)
    assert risk_of_worse(current, noisy.model_copy(update={"cost_sd": None}), cost_only) == 0.0  # a price: exact

    balanced = decide(inp(current=current, candidates=[noisy], objectives=cost_only))  # max_risk 0.1
    assert balanced.action is Action.none
    assert balanced.candidates[0].fate == "skipped"
    assert "probability 0.16 that it is worse than the live config" in balanced.candidates[0].reason
    assert any(c.name == "risk of cheap" and not c.passed for c in balanced.checks)
    aggressive = decide(
        inp(current=current, candidates=[noisy], objectives=cost_only, preset=PRESETS[Strategy.aggressive])
    )  # max_risk 0.2
    assert aggressive.action is Action.canary and aggressive.candidate == noisy


def test_a_window_the_live_config_hardly_served_decides_no_change():
    quiet = CURRENT.model_copy(update={"requests": 0, "quality_n": 0, "quality_mean": None})
    unobserved = Profile(model="new", provider="p", cost_per_request=0.001)
    cheaper = observed("small", quality=0.89, cost=0.002)
    decision = decide(inp(current=quiet, candidates=[unobserved, cheaper]))
    assert decision.action is Action.none and "served 0 requests" in decision.rationale
    assert {f.key: f.fate for f in decision.candidates} == {"new": "skipped", "small": "skipped"}
    assert any(c.name == "live traffic" and not c.passed for c in decision.checks)
    # With enough traffic the same candidates are acted on; an unsafe live config is acted on whatever the traffic.
    assert decide(inp(candidates=[unobserved, cheaper])).action is not Action.none
    few = CURRENT.model_copy(update={"requests": 29, "error_rate": 0.5})
    assert decide(inp(current=few)).action is Action.rollback
    assert decide(inp(current=quiet, guards=Guards(min_live_requests=0), candidates=[cheaper])).action is Action.canary
