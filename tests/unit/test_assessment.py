"""The assessment of the live config: analyzers and rules feed the decision (docs/architecture.md)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
from helpers.decisions import inp

from llm_optimizer.assessment import Samples, assess
from llm_optimizer.decision import Action, Profile, decide
from llm_optimizer.rules import RuleState, load_rules

NOW = datetime(2026, 11, 22, 12, tzinfo=UTC)
PROFILE = Profile(model="m", provider="p", requests=2000, error_rate=0.01, latency_p95_ms=1400, quality_mean=0.9)


# assess(current, baseline, ...): the live config's latest requests first, its earlier ones second.
def samples(seed: int, n: int = 2000, latency_factor: float = 1.0, quality: float = 0.9) -> Samples:
    rng = np.random.default_rng(seed)
    return Samples(
        ts=np.linspace(0, 3600, n),
        ok=np.ones(n, dtype=bool),
        latency_ms=500 * rng.lognormal(0, 0.4, n) * latency_factor,
        quality=(rng.random(n) < quality).astype(float),
        cost_usd=np.full(n, 0.01),
    )


def test_a_steady_config_has_nothing_actionable():
    result = assess(samples(2), samples(1), PROFILE, [], RuleState(), NOW)
    assert result.critical == result.high == result.alerts == []
    assert all(c.passed for c in result.checks)


def test_slower_means_a_backup_model_and_worse_means_a_rollback():
    slower = assess(samples(2, latency_factor=1.6), samples(1), PROFILE, [], RuleState(), NOW)
    assert [h.split(":")[0] for h in slower.high] == ["performance"] and slower.critical == []
    check = next(c for c in slower.checks if c.name == "analysis performance latency_p95_ms")
    assert not check.passed and check.detail.startswith("high: p95 latency") and "p_value" in check.detail
    worse = assess(samples(2, quality=0.5), samples(1), PROFILE, [], RuleState(), NOW)
    assert [c.split(":")[0] for c in worse.critical] == ["quality"]
    decided = decide(inp(critical_findings=worse.critical))
    assert decided.action is Action.rollback and "quality" in decided.rationale


def test_rules_fire_after_their_hold_time_and_respect_the_cooldown():
    rules = load_rules(
        """
- name: slow-p95
  when: {all: [{metric: latency_p95_ms, op: ">", value: 1000}, {metric: requests, op: ">=", value: 100}]}
  for_s: 60
  cooldown_s: 3600
  action: backup_model
- name: page-on-degradation
  when: {metric: performance.latency_p95_ms, op: "==", value: high}
  action: alert
"""
    )
    first = assess(samples(2, latency_factor=1.6), samples(1), PROFILE, rules, RuleState(), NOW)
    assert first.alerts == ["rule page-on-degradation"]
    assert "rule slow-p95" not in first.high  # holds since now: needs 60 s
    later = assess(samples(1), samples(2), PROFILE, rules, first.rule_state, NOW + timedelta(seconds=61))
    assert later.high == ["rule slow-p95"]
    again = assess(samples(1), samples(2), PROFILE, rules, later.rule_state, NOW + timedelta(seconds=200))
    assert again.high == []
    cooling = next(c for c in again.checks if c.name == "rule slow-p95")
    assert cooling.passed and "in cooldown" in cooling.detail
    alerted = decide(inp(alerts=first.alerts))
    assert alerted.action is Action.alert and "page-on-degradation" in alerted.rationale
