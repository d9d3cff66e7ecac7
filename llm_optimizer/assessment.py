"""Orient for one decision: the analyzers on the live config (its recent requests against its own earlier ones),
then the rules, over the profile's metrics and the findings.

What comes out feeds the decision (`docs/architecture.md`): critical findings (and `rollback` rules) lead to a
rollback, high ones (and `backup_model` rules) to a backup model, `alert` rules to an alert; every finding and
every rule evaluated is recorded in the decision's checks. Drift, anomalies and trends describe; they are recorded
and visible to rules, but act only through a rule (a faster model is drift too).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from llm_optimizer import analyzers
from llm_optimizer.analyzers import Finding
from llm_optimizer.decision import Check, Profile
from llm_optimizer.rules import Rule, RuleState, evaluate

ACTIONABLE = {"performance", "quality"}
TREND_BUCKETS = 30  # the trend test runs on this many consecutive bucket medians


class Samples(BaseModel):
    """A config's requests in a period, as arrays (successful requests only for latency)."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    ts: np.ndarray  # epoch seconds, oldest first
    ok: np.ndarray  # bool
    latency_ms: np.ndarray
    quality: np.ndarray  # NaN where unknown
    cost_usd: np.ndarray  # NaN where unknown

    @property
    def ok_latency(self) -> np.ndarray:
        return self.latency_ms[self.ok]

    @property
    def known_quality(self) -> np.ndarray:
        return self.quality[~np.isnan(self.quality)]

    @classmethod
    def empty(cls) -> Samples:
        nothing = np.array([], dtype=float)
        return cls(ts=nothing, ok=np.array([], dtype=bool), latency_ms=nothing, quality=nothing, cost_usd=nothing)


class Assessment(BaseModel):
    findings: list[Finding] = Field(default_factory=list)
    critical: list[str] = Field(default_factory=list)  # roll back
    high: list[str] = Field(default_factory=list)  # a backup model may answer
    alerts: list[str] = Field(default_factory=list)
    checks: list[Check] = Field(default_factory=list)
    rule_state: RuleState = Field(default_factory=RuleState)


def assess(
    current: Samples,
    baseline: Samples,
    profile: Profile,
    rules: list[Rule],
    rule_state: RuleState,
    now: datetime,
    *,
    latency_threshold: float = 0.2,
    quality_threshold: float = 0.1,
) -> Assessment:
    findings = [
        f
        for f in (
            analyzers.performance(baseline.ok_latency, current.ok_latency, threshold=latency_threshold),
            analyzers.quality(baseline.known_quality, current.known_quality, threshold=quality_threshold),
            analyzers.drift(baseline.ok_latency, current.ok_latency, "latency_ms"),
            analyzers.drift(baseline.known_quality, current.known_quality, "quality"),
            analyzers.anomalies(current.ok_latency, "latency_ms"),
            analyzers.trend(_bucket_medians(current.ts[current.ok], current.ok_latency), "latency_ms"),
        )
        if f is not None
    ]
    out = Assessment(findings=findings)
    for f in findings:
        actionable = f.analyzer in ACTIONABLE and f.severity in ("high", "critical")
        if actionable and f.severity == "critical" and f.analyzer == "quality":
            out.critical.append(f"{f.analyzer}: {f.message}")
        elif actionable:
            out.high.append(f"{f.analyzer}: {f.message}")
        out.checks.append(
            Check(
                name=f"analysis {f.analyzer} {f.metric}",
                kind="safety",
                passed=not actionable,
                detail=f"{f.severity}: {f.message} ({_evidence(f.evidence)})",
            )
        )
    evaluation = evaluate(rules, rule_metrics(profile, findings), now, rule_state)
    out.rule_state = evaluation.state
    for rule, trace in ((r, t) for t in evaluation.trace for r in rules if r.name == t.rule):
        if trace.fired:
            text = f"rule {rule.name}"
            {"rollback": out.critical, "backup_model": out.high, "alert": out.alerts}.get(rule.action, []).append(text)
        out.checks.append(
            Check(
                name=f"rule {rule.name}",
                kind="policy",
                passed=not (trace.fired and rule.action in ("rollback", "backup_model", "alert")),
                detail=f"{trace.reason} (action {rule.action})",
            )
        )
    return out


def rule_metrics(profile: Profile, findings: list[Finding]) -> dict[str, Any]:
    """The flat mapping rules see: the live profile, and each finding by analyzer and metric."""
    metrics: dict[str, Any] = {
        "requests": profile.requests,
        "error_rate": profile.error_rate,
        "latency_p95_ms": profile.latency_p95_ms,
        "quality": profile.quality_mean,
        "cost_per_request": profile.cost_per_request,
    }
    for f in findings:
        metrics[f"{f.analyzer}.{f.metric}"] = f.severity
        if f.analyzer == "trend":
            metrics[f"trend.{f.metric}"] = f.evidence.get("direction")
        if f.analyzer == "drift":
            metrics[f"drift.{f.metric}.psi"] = f.evidence.get("psi")
    return metrics


def _bucket_medians(ts: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Medians of `values` in TREND_BUCKETS equal spans of time (empty spans left out)."""
    if len(ts) < 2 * TREND_BUCKETS:
        return np.array([])
    edges = np.linspace(ts.min(), ts.max(), TREND_BUCKETS + 1)
    index = np.clip(np.searchsorted(edges, ts, side="right") - 1, 0, TREND_BUCKETS - 1)
    return np.array([np.median(values[index == b]) for b in range(TREND_BUCKETS) if np.any(index == b)])


def _evidence(evidence: dict[str, Any]) -> str:
    shown = []
    for key in ("p_value", "effect_size", "psi", "baseline", "current", "share", "slope"):
        if isinstance(evidence.get(key), int | float):
            shown.append(f"{key} {evidence[key]:.3g}")
    return ", ".join(shown) or "no test"
