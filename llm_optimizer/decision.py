"""Decide: from observed profiles, findings and constraints to one explained, safe `Decision`.

Order of the decision flow: safety first (a critical finding on the live config rolls back), then the
change guards (cooldown, rollback budget), then candidate selection: hard constraints filter, the Pareto frontier
over cost, quality and latency narrows, a weighted score against the current config picks, and the strategy
preset's minimum improvement, confidence and maximum risk gate the result. Every check is recorded in the decision.
"""

from __future__ import annotations

import hashlib
import math
import uuid
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator
from scipy import stats as sps

from llm_optimizer import analyzers
from llm_optimizer.bandit import BetaArm
from llm_optimizer.exploration import RETRYABLE, ArmResult, QualityEstimate
from llm_optimizer.readable import Tidy
from llm_optimizer.rules import RuleState
from llm_optimizer.strategies import StrategyPreset


class Action(StrEnum):
    none = "none"
    canary = "canary"
    rollback = "rollback"
    experiment = "experiment"
    alert = "alert"


class Objectives(BaseModel):
    """Weights of the weighted score (defaults: cost 0.6, quality 0.3, latency 0.1); they need not sum to one."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    cost: float = Field(default=0.6, ge=0)
    quality: float = Field(default=0.3, ge=0)
    latency: float = Field(default=0.1, ge=0)


class Constraints(BaseModel):
    """Hard limits: a candidate that breaks one is never proposed, and the live config breaking one is a finding."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    quality_floor_ratio: float = Field(default=0.95, gt=0, le=1, description="of the reference config's quality")
    quality_min: float | None = Field(default=None, ge=0, le=1)
    p95_latency_max_ms: float | None = Field(default=None, gt=0)
    error_rate_max: float | None = Field(default=0.05, ge=0, le=1)
    daily_budget_usd: float | None = Field(default=None, gt=0)
    monthly_budget_usd: float | None = Field(default=None, gt=0)
    approved_models: list[str] | None = None
    denied_providers: list[str] = Field(default_factory=list)
    approved_regions: list[str] | None = None  # a candidate's region must be one of these (and known)
    # deny: a candidate outside the approved models or from a denied provider is never proposed; warn: it may be,
    # and the decision records the breach as a warning.
    governance_mode: Literal["deny", "warn"] = "deny"


class Profile(BaseModel):
    """What is known of one candidate (a model, or a config an operator offered) for a service: observed, measured
    by an exploration, or priced only."""

    model_config = ConfigDict(frozen=True)

    key: str = ""  # the candidate's name: the model's for a model candidate; set from `model` when empty
    model: str
    provider: str
    config_version: str | None = None
    requests: int = 0
    error_rate: Tidy | None = None
    latency_p95_ms: Tidy | None = None
    quality_mean: Tidy | None = None
    quality_sd: Tidy | None = None
    quality_n: int = 0
    cost_per_request: Tidy | None = None
    cost_sd: Tidy | None = None
    tokens_in_mean: Tidy | None = None
    tokens_out_mean: Tidy | None = None
    region: str | None = None  # where the model is hosted, when the model registry says
    price_source: str | None = None  # where cost_per_request comes from when not observed (registry, genai-prices...)
    changes: dict = Field(default_factory=dict)  # a config candidate's changes to the live spec (prompt, params)

    @model_validator(mode="after")
    def _key_defaults_to_model(self) -> Profile:
        if not self.key:
            object.__setattr__(self, "key", self.model)
        return self

    @property
    def quality_known(self) -> bool:
        return self.quality_mean is not None and self.quality_n >= 30

    @property
    def known_quality(self) -> float | None:
        """The mean quality where it is known (`quality_known`), else None."""
        return self.quality_mean if self.quality_known else None


class Check(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str
    kind: Literal["safety", "guard", "constraint", "policy", "objective"]
    passed: bool
    detail: str


class Impact(BaseModel):
    """An expected relative change (cost, latency) or difference (quality), with a 95% interval where estimable."""

    model_config = ConfigDict(frozen=True)

    estimate: Tidy
    low: Tidy | None = None
    high: Tidy | None = None


class ExploredArm(BaseModel):
    """A candidate's last exploration: its measurements and fate, and when."""

    since: datetime | None = None  # when its exploration began: its measurements are the version's since then
    at: datetime
    result: ArmResult


class Memory(BaseModel):
    """What the cycle remembers between decisions (carried across continue-as-new)."""

    last_change_at: datetime | None = None
    reference_quality: float | None = None  # quality of the config the cycle started from: the floor's base
    last_alert_at: datetime | None = None
    rollbacks: list[datetime] = Field(default_factory=list)
    rolled_back_models: dict[str, datetime] = Field(default_factory=dict)
    rule_state: RuleState = Field(default_factory=RuleState)
    canary_outcomes: dict[str, tuple[int, int]] = Field(default_factory=dict)  # key -> (promoted, rolled back)
    # The reference config's quality, pooled over every measurement while it was live (the floor's base).
    reference: QualityEstimate | None = None
    reference_version: str | None = None
    explored: dict[str, ExploredArm] = Field(default_factory=dict)  # key -> what its last exploration measured


class Guards(BaseModel):
    model_config = ConfigDict(frozen=True)

    change_cooldown: timedelta = timedelta(minutes=30)
    max_rollbacks_per_day: int = 3
    min_live_requests: int = Field(default=30, ge=0)  # the live config's requests a change is judged against
    rolled_back_retry_after: timedelta = timedelta(days=1)
    explore_unobserved: bool = True
    explore_max_arms: int = Field(default=10, ge=1)
    explore_unpriced: bool = True


class CandidateFate(BaseModel):
    """What a decision did with one offered candidate: proposed (canary), exploring, or skipped with the reason."""

    model_config = ConfigDict(frozen=True)

    key: str
    model: str
    fate: Literal["proposed", "exploring", "skipped"]
    reason: str
    cost_per_request: Tidy | None = None
    price_source: str | None = None
    quality_mean: Tidy | None = None
    quality_n: int = 0


class Decision(BaseModel):
    decision_id: str
    service: str
    made_at: datetime
    action: Action
    rationale: str
    confidence: Tidy | None = None
    current_version: str | None = None
    target_version: str | None = None  # rollback target
    candidate: Profile | None = None  # canary candidate
    arms: list[Profile] = Field(default_factory=list)  # experiment: the candidates an exploration measures at once
    exploration: bool = False
    reference_quality: Tidy | None = None
    reference: QualityEstimate | None = None  # the floor's base, for the cycle to keep
    # The largest relative quality drop from the live config that keeps the floor: the canary judge's quality limit.
    floor_margin: Tidy | None = None
    expected_impact: dict[str, Impact] = Field(default_factory=dict)
    checks: list[Check] = Field(default_factory=list)
    candidates: list[CandidateFate] = Field(default_factory=list)  # every offered candidate's fate
    rule_state: RuleState | None = None  # the rules' state after this decision, for the cycle to keep


class DecisionInput(BaseModel):
    service: str
    now: datetime
    current_version: str
    parent_version: str | None = None
    current: Profile
    reference_quality: float | None = None  # quality the floor is relative to (the starting config's)
    reference: QualityEstimate | None = None  # the same with its spread and sample size, when known
    candidates: list[Profile] = Field(default_factory=list)
    critical_findings: list[str] = Field(default_factory=list)  # roll back (or alert), never a backup model
    findings: list[str] = Field(default_factory=list)  # breaches seen on the fast path: a backup model may answer
    alerts: list[str] = Field(default_factory=list)  # alert rules that fired: an alert when nothing else is done
    spent_today_usd: float | None = None
    spent_month_usd: float | None = None
    constraints: Constraints = Constraints()
    objectives: Objectives = Objectives()
    preset: StrategyPreset
    guards: Guards = Guards()
    memory: Memory = Memory()


def decide(inp: DecisionInput) -> Decision:
    checks: list[Check] = []
    fates: dict[str, CandidateFate] = {}

    def done(action: Action, rationale: str, default_fate: str | None = None, **fields) -> Decision:
        # Every offered candidate leaves with a fate: the ones not reached take the decision's own reason.
        for c in inp.candidates:
            if c.key == inp.current.key:
                fates.setdefault(c.key, _fate(c, "skipped", "it is the live config"))
            fates.setdefault(c.key, _fate(c, "skipped", default_fate or f"not considered: {rationale}"))
        return Decision(
            decision_id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"{inp.service}/{inp.now.isoformat()}")),
            service=inp.service,
            made_at=inp.now,
            action=action,
            rationale=rationale,
            current_version=inp.current_version,
            reference_quality=inp.reference_quality,
            reference=inp.reference,
            floor_margin=_floor_margin(inp),
            checks=checks,
            candidates=list(fates.values()),
            **fields,
        )

    # 1. Safety first.
    floor = _quality_floor(inp)
    broken = [*inp.findings, *violations(inp.current, inp.constraints, floor)]
    checks.append(
        Check(
            name="live config within hard constraints",
            kind="safety",
            passed=not broken and not inp.critical_findings,
            detail="; ".join(broken + inp.critical_findings) or "all limits hold",
        )
    )
    if inp.critical_findings or broken:
        reason = "; ".join(inp.critical_findings + broken)
        backup = None if inp.critical_findings or _quality_broken(inp) else _backup(inp, checks)
        if backup is not None:
            return done(
                Action.canary,
                f"the live config {inp.current_version} breaks a limit ({reason}): canary the backup model "
                f"{backup.model}, which meets every limit",
                candidate=backup,
                confidence=_confidence_meets_floor(backup, floor),
                expected_impact=expected_impact(inp.current, backup),
            )
        if inp.parent_version:
            return done(
                Action.rollback,
                f"the live config {inp.current_version} is unsafe ({reason}): roll back to {inp.parent_version}",
                target_version=inp.parent_version,
                confidence=1.0,
            )
        last = inp.memory.last_alert_at
        if last is not None and inp.now - last < inp.guards.change_cooldown:
            # The breach goes on and nothing can be done: do not raise the same alert every fast-path tick.
            return done(Action.none, f"still unsafe ({reason}); alerted at {last.isoformat()}")
        return done(Action.alert, f"the live config {inp.current_version} is unsafe ({reason}) and has no parent")

    # 2. Change guards.
    if inp.memory.last_change_at and inp.now - inp.memory.last_change_at < inp.guards.change_cooldown:
        until = inp.memory.last_change_at + inp.guards.change_cooldown
        checks.append(Check(name="change cooldown", kind="guard", passed=False, detail=f"until {until.isoformat()}"))
        return done(Action.none, f"no change: the last one was at {inp.memory.last_change_at.isoformat()}, cooldown")
    recent = [t for t in inp.memory.rollbacks if inp.now - t < timedelta(days=1)]
    if len(recent) >= inp.guards.max_rollbacks_per_day:
        checks.append(Check(name="rollback budget", kind="guard", passed=False, detail=f"{len(recent)} today"))
        return done(Action.none, f"no change: {len(recent)} rollbacks in the last 24 h (limit reached)")
    served, needed = inp.current.requests, inp.guards.min_live_requests
    if served < needed:
        # A quiet window says nothing of the live config, nor of a candidate against it; an exploration would get
        # a slice of no traffic. (Safety, above, still acts on what the fast path found.)
        checks.append(
            Check(name="live traffic", kind="guard", passed=False, detail=f"{served} requests (at least {needed})")
        )
        return done(
            Action.none,
            f"no change: the live config served {served} requests in the window, fewer than the {needed} a change "
            "is judged against",
        )

    # 3. Candidates: the measured ones compete on the Pareto frontier and the weighted score; the unmeasured are
    # explored (several at once when there are several, docs/architecture.md "Exploration").
    others = [c for c in inp.candidates if c.key != inp.current.key]
    feasible = _screen(others, inp, checks, label="candidate", kind="constraint", fates=fates)
    # Over the daily budget, cost is the only objective and any saving counts (the floor still holds).
    objectives, minimum = inp.objectives, inp.preset.min_improvement
    over_budget = _over_budget(inp, checks)
    if over_budget:
        objectives, minimum = Objectives(cost=1, quality=0, latency=0), 1e-9
    measured = [c for c in feasible if c.quality_known and c.cost_per_request is not None]
    unmeasured = [c for c in feasible if c not in measured]
    frontier = pareto_frontier([inp.current, *measured])
    for c in measured:
        if c not in frontier:
            fates[c.key] = _fate(c, "skipped", "dominated: another candidate is as cheap, as good and as fast")
    ranked = sorted(
        (c for c in measured if c in frontier), key=lambda c: weighted_gain(inp.current, c, objectives), reverse=True
    )
    for candidate in ranked:
        gain = weighted_gain(inp.current, candidate, objectives)
        enough = gain >= minimum
        checks.append(
            Check(
                name=f"improvement of {candidate.key}",
                kind="objective",
                passed=enough,
                detail=f"weighted gain {gain:+.1%} (minimum {minimum:.0%})",
            )
        )
        if not enough:
            fates[candidate.key] = _fate(candidate, "skipped", f"weighted gain {gain:+.1%} < minimum {minimum:.0%}")
            continue
        confidence = _confidence_meets_floor(candidate, floor)
        if confidence < inp.preset.min_confidence:
            checks.append(
                Check(
                    name=f"confidence in {candidate.key}",
                    kind="objective",
                    passed=False,
                    detail=f"{confidence:.2f} < {inp.preset.min_confidence}",
                )
            )
            fates[candidate.key] = _fate(
                candidate,
                "skipped",
                f"confidence {confidence:.2f} that it keeps the floor < {inp.preset.min_confidence}",
            )
            continue
        risk = risk_of_worse(inp.current, candidate, objectives)
        if risk > inp.preset.max_risk:
            checks.append(
                Check(
                    name=f"risk of {candidate.key}",
                    kind="objective",
                    passed=False,
                    detail=f"P(worse) {risk:.2f} > {inp.preset.max_risk}",
                )
            )
            fates[candidate.key] = _fate(
                candidate,
                "skipped",
                f"probability {risk:.2f} that it is worse than the live config on the weighted score > max risk "
                f"{inp.preset.max_risk}",
            )
            continue
        impact = expected_impact(inp.current, candidate)
        fates[candidate.key] = _fate(candidate, "proposed", f"canary: {_describe(impact)}")
        return done(
            Action.canary,
            f"canary {candidate.key}: {_describe(impact)}; quality stays above the floor with confidence "
            f"{confidence:.2f}",
            candidate=candidate,
            confidence=confidence,
            expected_impact=impact,
            default_fate="waits: a measured candidate is rolled out first",
        )

    # 4. Exploration of the candidates not measured yet.
    worth = []
    for candidate in unmeasured:
        gain = weighted_gain(inp.current, candidate, objectives)  # unknown quality counts as unchanged
        if candidate.cost_per_request is not None and gain < minimum:
            fates[candidate.key] = _fate(
                candidate, "skipped", f"its cost gives a weighted gain of {gain:+.1%} at best (minimum {minimum:.0%})"
            )
        elif not inp.guards.explore_unobserved:
            fates[candidate.key] = _fate(candidate, "skipped", "not measured yet and exploration is disabled")
        elif over_budget:
            fates[candidate.key] = _fate(candidate, "skipped", "not measured yet; no exploration while over budget")
        else:
            worth.append(candidate)
    # Which ones first, when there are more than an exploration takes: a Thompson draw on each one's canary record.
    worth = _thompson_order_of_unobserved(worth, inp, checks)
    arms, waiting = worth[: inp.guards.explore_max_arms], worth[inp.guards.explore_max_arms :]
    for c in waiting:
        fates[c.key] = _fate(c, "skipped", f"waits: at most {inp.guards.explore_max_arms} arms are explored at once")
    # Every unmeasured candidate, a single one included, is measured in the exploration slice first: its share is
    # bounded, and a canary starts only from measured evidence (a canary's first stage alone is 5% or more).
    if arms:
        for c in arms:
            fates[c.key] = _fate(c, "exploring", "measured on a share of real traffic with the other arms")
        return done(
            Action.experiment,
            (
                f"explore {len(arms)} candidates at once ({', '.join(c.key for c in arms)}): each serves a small "
                "share of traffic until it is credibly above or below the floor"
                if len(arms) > 1
                else f"explore {arms[0].key} on a small share of traffic until it is credibly above or below the floor"
            ),
            arms=arms,
            exploration=True,
        )
    if inp.alerts:
        return done(Action.alert, "alerting: " + "; ".join(inp.alerts) + "; no candidate is enough of an improvement")
    return done(Action.none, "no candidate improves enough on the live config under the constraints")


def _fate(candidate: Profile, fate: str, reason: str) -> CandidateFate:
    return CandidateFate(
        key=candidate.key,
        model=candidate.model,
        fate=fate,
        reason=reason,
        cost_per_request=candidate.cost_per_request,
        price_source=candidate.price_source,
        quality_mean=candidate.quality_mean,
        quality_n=candidate.quality_n,
    )


def _thompson_order_of_unobserved(ranked: list[Profile], inp: DecisionInput, checks: list[Check]) -> list[Profile]:
    """Which unobserved model to explore first: a Thompson draw from each one's Beta posterior of canary success
    (promoted vs rolled back in this service before; uniform when never tried), so exploration goes to the models
    most likely to succeed while still trying the others. Observed candidates keep their places; the draw is seeded
    by the decision, so the same inputs decide the same way."""
    unobserved = [c for c in ranked if not c.quality_known]
    if len(unobserved) < 2:
        return ranked
    arms = {}
    for c in unobserved:
        arm = BetaArm()
        arm.update(*inp.memory.canary_outcomes.get(c.key, (0, 0)))
        arms[c.key] = arm
    seed = int.from_bytes(hashlib.sha256(f"{inp.service}/{inp.now.isoformat()}".encode()).digest()[:8], "big")
    draws = {
        model: float(arm.sample(np.random.default_rng(seed + i), 1)[0]) for i, (model, arm) in enumerate(arms.items())
    }
    order = iter(sorted(unobserved, key=lambda c: draws[c.key], reverse=True))
    checks.append(
        Check(
            name="exploration order (Thompson sampling)",
            kind="objective",
            passed=True,
            detail=", ".join(f"{m} {d:.2f}" for m, d in sorted(draws.items(), key=lambda x: -x[1])),
        )
    )
    return [c if c.quality_known else next(order) for c in ranked]


def _over_budget(inp: DecisionInput, checks: list[Check]) -> bool:
    """Today's and this month's spend, forecast linearly to their ends, against the daily and monthly budgets."""
    c = inp.constraints
    if (c.daily_budget_usd is None or inp.spent_today_usd is None) and (
        c.monthly_budget_usd is None or inp.spent_month_usd is None
    ):
        return False
    finding = analyzers.cost(
        inp.spent_today_usd or 0.0, inp.now, c.daily_budget_usd, inp.spent_month_usd, c.monthly_budget_usd
    )
    over = finding.evidence["budget_ratio"] > 1
    checks.append(Check(name="budget", kind="constraint", passed=not over, detail=finding.message))
    return over


def _quality_broken(inp: DecisionInput) -> bool:
    floor = _quality_floor(inp)
    return floor is not None and inp.current.quality_known and _upper(inp.current) < floor


def _backup(inp: DecisionInput, checks: list[Check]) -> Profile | None:
    """For a latency or error-rate breach: the best observed candidate that meets every limit itself."""
    observed = [
        c for c in inp.candidates if c.key != inp.current.key and c.quality_known and c.latency_p95_ms is not None
    ]
    usable = _screen(observed, inp, checks, label="backup", kind="safety")
    return max(usable, key=lambda c: weighted_gain(inp.current, c, inp.objectives), default=None)


def _screen(
    candidates: list[Profile],
    inp: DecisionInput,
    checks: list[Check],
    *,
    label: str,
    kind: Literal["safety", "constraint"],
    fates: dict[str, CandidateFate] | None = None,
) -> list[Profile]:
    """The candidates that meet every hard constraint; one check recorded per candidate either way."""
    floor = _quality_floor(inp)
    passed = []
    for candidate in candidates:
        problems = _candidate_problems(candidate, inp, floor)
        if problems and fates is not None:
            fates[candidate.key] = _fate(candidate, "skipped", "; ".join(problems))
        checks.append(
            Check(
                name=f"{label} {candidate.key}",
                kind=kind,
                passed=not problems,
                detail="; ".join(problems) or "meets every hard constraint",
            )
        )
        if not problems:
            passed.append(candidate)
            warnings = (
                governance_breaches(candidate, inp.constraints) if inp.constraints.governance_mode == "warn" else []
            )
            if warnings:
                checks.append(
                    Check(
                        name=f"governance {candidate.key}",
                        kind="policy",
                        passed=True,
                        detail="allowed with a warning (governance_mode warn): " + "; ".join(warnings),
                    )
                )
    return passed


def _floor_margin(inp: DecisionInput) -> float | None:
    floor = _quality_floor(inp)
    if floor is None or not inp.current.quality_known or not inp.current.quality_mean:
        return None
    return round(max(0.0, 1 - floor / inp.current.quality_mean), 6)


def _quality_floor(inp: DecisionInput) -> float | None:
    floors = []
    if inp.reference_quality is not None:
        floors.append(inp.reference_quality * inp.constraints.quality_floor_ratio)
    if inp.constraints.quality_min is not None:
        floors.append(inp.constraints.quality_min)
    return max(floors) if floors else None


def broken_limits(profile: Profile, constraints: Constraints, floor: float | None) -> dict[str, str]:
    """The hard limits `profile` breaks: each limit's name (`error_rate_max`, `p95_latency_max_ms`,
    `quality_floor`) -> what is wrong, in words."""
    found = {}
    if constraints.error_rate_max is not None and (profile.error_rate or 0) > constraints.error_rate_max:
        found["error_rate_max"] = f"error rate {profile.error_rate:.1%} > {constraints.error_rate_max:.1%}"
    if constraints.p95_latency_max_ms is not None and (profile.latency_p95_ms or 0) > constraints.p95_latency_max_ms:
        found["p95_latency_max_ms"] = (
            f"p95 latency {profile.latency_p95_ms:.0f} ms > {constraints.p95_latency_max_ms:.0f} ms"
        )
    if floor is not None and profile.quality_known and _upper(profile) < floor:
        found["quality_floor"] = f"quality {profile.quality_mean:.3f} below the floor {floor:.3f}"
    return found


def violations(profile: Profile, constraints: Constraints, floor: float | None) -> list[str]:
    """What `broken_limits` finds, in words."""
    return list(broken_limits(profile, constraints, floor).values())


def _candidate_problems(candidate: Profile, inp: DecisionInput, floor: float | None) -> list[str]:
    c = inp.constraints
    problems = violations(candidate, c, floor)
    if (quality := candidate.known_quality) is not None and floor is not None and quality < floor:
        problems.append(f"quality {quality:.3f} below the floor {floor:.3f}")
    if c.governance_mode == "deny":
        problems += governance_breaches(candidate, c)
    if candidate.cost_per_request is None and not inp.guards.explore_unpriced:
        problems.append("no price known, and exploration of unpriced candidates is disabled")
    rolled_back_at = inp.memory.rolled_back_models.get(candidate.key)
    if rolled_back_at and inp.now - rolled_back_at < inp.guards.rolled_back_retry_after:
        problems.append(f"rolled back at {rolled_back_at.isoformat()}; not retried before the retry period ends")
    explored = inp.memory.explored.get(candidate.key)
    if (
        explored is not None
        and explored.result.fate not in ("qualified", *RETRYABLE)
        and inp.now - explored.at < inp.guards.rolled_back_retry_after
    ):
        problems.append(f"explored at {explored.at.isoformat()}: {explored.result.fate} ({explored.result.reason})")
    return sorted(set(problems))


def governance_breaches(candidate: Profile, constraints: Constraints) -> list[str]:
    """The approved-model, denied-provider and approved-region policies that `candidate` breaks."""
    breaches = []
    if constraints.approved_models is not None and candidate.model not in constraints.approved_models:
        breaches.append("not an approved model")
    if candidate.provider in constraints.denied_providers:
        breaches.append(f"provider {candidate.provider} is denied")
    if constraints.approved_regions is not None and candidate.region not in constraints.approved_regions:
        breaches.append(f"region {candidate.region or 'unknown'} is not approved")
    return breaches


class PolicyViolation(BaseModel):
    """A governance policy a proposed change breaks, as the governance service reports it (docs/integrations.md)."""

    policy_id: str
    policy_name: str = ""
    severity: str = "deny"  # deny, warn (or the service's own severities)
    description: str = ""


class GovernanceVerdict(BaseModel):
    approved: bool
    violations: list[PolicyViolation] = Field(default_factory=list)
    rationale: str = ""
    source: Literal["service", "fallback"] = "service"


ROLLOUT_ACTIONS = ("canary", "experiment")


def apply_governance(decision: Decision, verdict: GovernanceVerdict) -> Decision:
    """A rollout that governance denies becomes no action, with the violations; approvals and warnings are
    recorded. Decisions that roll nothing out (none, rollback, alert) are not subject to it."""
    if decision.action.value not in ROLLOUT_ACTIONS:
        return decision
    detail = _governance_detail(verdict)
    check = Check(name="governance", kind="policy", passed=verdict.approved, detail=detail)
    if verdict.approved:
        return decision.model_copy(update={"checks": [*decision.checks, check]})
    target = decision.candidate.model if decision.candidate else "the change"
    return decision.model_copy(
        update={
            "action": Action.none,
            "rationale": f"governance denied {target}: {detail} (proposed: {decision.rationale})",
            "checks": [*decision.checks, check],
        }
    )


def apply_governance_to_arms(decision: Decision, verdicts: dict[str, GovernanceVerdict]) -> Decision:
    """An exploration's arms that governance denies are left out (their fate says why); none left: no action."""
    denied = {key: v for key, v in verdicts.items() if not v.approved}
    if decision.action is not Action.experiment or not denied:
        return decision
    arms = [a for a in decision.arms if a.key not in denied]
    fates = [
        f.model_copy(update={"fate": "skipped", "reason": f"governance denied it: {denied[f.key].rationale}"})
        if f.key in denied
        else f
        for f in decision.candidates
    ]
    listed = "; ".join(f"{key}: {_governance_detail(denied[key])}" for key in sorted(denied))
    check = Check(name="governance", kind="policy", passed=not denied, detail=f"denied {listed}")
    update: dict = {"arms": arms, "candidates": fates, "checks": [*decision.checks, check]}
    if not arms:
        names = ", ".join(a.model for a in decision.arms)
        update |= {
            "action": Action.none,
            "rationale": f"governance denied {names}: {listed} (proposed: {decision.rationale})",
        }
    return decision.model_copy(update=update)


def _governance_detail(verdict: GovernanceVerdict) -> str:
    """The verdict's rationale and each violation, as the audit and the UI show them."""
    listed = "; ".join(f"{v.policy_id} ({v.severity}): {v.description}" for v in verdict.violations)
    return " - ".join(part for part in (verdict.rationale, listed) if part) or "approved"


def _upper(profile: Profile) -> float:
    se = (profile.quality_sd or 0) / math.sqrt(max(profile.quality_n, 1))
    return (profile.quality_mean or 0) + 1.96 * se


def _confidence_meets_floor(profile: Profile, floor: float | None) -> float:
    """P(true quality >= floor) under a normal approximation of the mean."""
    if floor is None:
        return 1.0
    se = (profile.quality_sd or 0) / math.sqrt(max(profile.quality_n, 1))
    if se == 0:
        return 1.0 if (profile.quality_mean or 0) >= floor else 0.0
    return float(sps.norm.cdf(((profile.quality_mean or 0) - floor) / se))


def pareto_frontier(profiles: list[Profile]) -> list[Profile]:
    """The profiles no other profile dominates on (lower cost, higher quality, lower p95 latency).

    Unknown values count as the worst, so an unobserved profile is on the frontier only through its price.
    """

    def key(p: Profile) -> tuple[float, float, float]:
        return (
            p.cost_per_request if p.cost_per_request is not None else math.inf,
            -(q if (q := p.known_quality) is not None else -math.inf),
            p.latency_p95_ms if p.latency_p95_ms is not None else math.inf,
        )

    keys = [key(p) for p in profiles]
    frontier = []
    for i, p in enumerate(profiles):
        dominated = any(
            all(o <= s for o, s in zip(keys[j], keys[i], strict=True)) and keys[j] != keys[i]
            for j in range(len(profiles))
            if j != i
        )
        if not dominated:
            frontier.append(p)
    return frontier


def weighted_gain(current: Profile, candidate: Profile, objectives: Objectives) -> float:
    """Weighted relative improvement of `candidate` over `current` (positive is better).

    Unknown quality or latency of the candidate counts as unchanged: the canary measures them.
    """
    total = objectives.cost + objectives.quality + objectives.latency
    if total == 0:
        return 0.0
    gain = 0.0
    if current.cost_per_request and candidate.cost_per_request is not None:
        gain += objectives.cost * (current.cost_per_request - candidate.cost_per_request) / current.cost_per_request
    live_q, candidate_q = current.known_quality, candidate.known_quality
    if live_q and candidate_q is not None:
        gain += objectives.quality * (candidate_q - live_q) / live_q
    if current.latency_p95_ms and candidate.latency_p95_ms:
        gain += objectives.latency * (current.latency_p95_ms - candidate.latency_p95_ms) / current.latency_p95_ms
    return gain / total


def risk_of_worse(current: Profile, candidate: Profile, objectives: Objectives) -> float:
    """P(weighted gain < 0): the probability that `candidate` is worse than `current` on the weighted score, under a
    normal approximation of `weighted_gain`. Its uncertainty is that of the measured means of cost and quality (the
    delta method on each ratio of two independent means); a value without a spread (a price, a p95) counts as exact.
    """
    total = objectives.cost + objectives.quality + objectives.latency
    gain = weighted_gain(current, candidate, objectives)
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


def _describe(impact: dict[str, Impact]) -> str:
    parts = []
    if "cost_per_request" in impact:
        parts.append(f"cost per request {impact['cost_per_request'].estimate:+.0%}")
    if "quality" in impact:
        q = impact["quality"]
        parts.append(f"quality {q.estimate:+.3f} (95% CI {q.low:+.3f} .. {q.high:+.3f})")
    if "latency_p95" in impact:
        parts.append(f"p95 latency {impact['latency_p95'].estimate:+.0%}")
    return ", ".join(parts) or "impact unknown"
