"""Rules as data: parsing, composite logic (property-based), duration, cooldown, daily cap, dry run."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from llm_optimizer.errors import ValidationFailed
from llm_optimizer.rules import All, Any_, Leaf, Not, RuleState, evaluate, load_rules

T0 = datetime(2026, 11, 22, tzinfo=UTC)
RULES = load_rules(
    """
- name: error-rate-rollback
  safety: true
  priority: 10
  when: {all: [{metric: error_rate, op: ">", value: 0.05}, {not: {metric: requests, op: "<", value: 100}}]}
  for_s: 300
  cooldown_s: 1800
  max_per_day: 2
  action: rollback
- name: slow-and-rising
  priority: 50
  when:
    any:
      - {metric: latency_p95_ms, op: ">", value: 3000}
      - {metric: trend.latency_p95, op: "==", value: increasing}
  action: backup_model
"""
)


def test_safety_rules_come_first_and_conditions_must_hold_for_their_duration():
    metrics = {"error_rate": 0.1, "requests": 500, "latency_p95_ms": 4000}
    first = evaluate(RULES, metrics, T0, RuleState())
    assert [t.rule for t in first.trace] == ["error-rate-rollback", "slow-and-rising"]
    assert [r.name for r in first.fired] == ["slow-and-rising"]
    assert "needs 300s" in first.trace[0].reason
    later = evaluate(RULES, metrics, T0 + timedelta(seconds=301), first.state)
    assert [r.name for r in later.fired] == ["error-rate-rollback", "slow-and-rising"]


def test_cooldown_daily_cap_and_reset_when_the_condition_breaks():
    metrics = {"error_rate": 0.1, "requests": 500}
    state = evaluate(RULES, metrics, T0, RuleState()).state
    times = [T0 + timedelta(seconds=s) for s in (300, 600, 2200, 4100, 6000)]
    fired = []
    for t in times:
        result = evaluate(RULES, metrics, t, state)
        state = result.state
        fired.append(bool(result.fired and result.fired[0].name == "error-rate-rollback"))
    assert fired == [True, False, True, False, False]  # cooldown, then the cap of 2 per day
    assert "cap 2" in result.trace[0].reason
    quiet = evaluate(RULES, {"error_rate": 0.01, "requests": 500}, times[-1], state)
    assert "error-rate-rollback" not in quiet.state.holding_since


def test_dry_run_leaves_the_state_untouched():
    metrics = {"error_rate": 0.1, "requests": 500}
    state = evaluate(RULES, metrics, T0, RuleState()).state
    dry = evaluate(RULES, metrics, T0 + timedelta(seconds=400), state, dry_run=True)
    assert dry.fired and dry.state == state


def test_bad_rules_are_refused_naming_the_field():
    with pytest.raises(ValidationFailed, match=r"0\.action"):
        load_rules("- {name: x, when: {metric: a, op: '>', value: 1}, action: explode}")
    with pytest.raises(ValidationFailed, match="not valid YAML"):
        load_rules("- {name: [")


metric_values = st.dictionaries(st.sampled_from(["a", "b", "c"]), st.floats(-10, 10, allow_nan=False), max_size=3)
leaves = st.builds(
    Leaf,
    metric=st.sampled_from(["a", "b", "c"]),
    op=st.sampled_from([">", "<", ">=", "<=", "==", "!="]),
    value=st.floats(-10, 10, allow_nan=False),
)


@given(metric_values, leaves, leaves)
def test_composite_logic_obeys_boolean_algebra(metrics, x, y):
    assert All(all=[x, y]).holds(metrics) == (x.holds(metrics) and y.holds(metrics))
    assert Any_(any=[x, y]).holds(metrics) == (x.holds(metrics) or y.holds(metrics))
    assert Not(not_=Not(not_=x)).holds(metrics) == x.holds(metrics)
    # De Morgan
    assert Not(not_=All(all=[x, y])).holds(metrics) == Any_(any=[Not(not_=x), Not(not_=y)]).holds(metrics)


@given(leaves)
def test_a_missing_metric_never_satisfies_a_comparison(leaf):
    assert not leaf.holds({})
