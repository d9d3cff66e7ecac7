"""Decide: from observed profiles, findings and constraints to one explained, safe `Decision`.

Order of the decision flow: safety first (a critical finding on the live config rolls back), then the
change guards (cooldown, rollback budget), then candidate selection: hard constraints filter, the Pareto frontier
over cost, quality and latency narrows, a weighted score against the current config picks, and the strategy
preset's minimum improvement, confidence and maximum risk gate the result. Every check is recorded in the decision.
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import timedelta
from typing import Literal

import numpy as np

from llm_optimizer import analyzers
from llm_optimizer.bandit import BetaArm
from llm_optimizer.decision.estimates import (
    confidence_meets_floor,
    describe_impact,
    expected_impact,
    quality_upper_bound,
    risk_of_worse,
)
from llm_optimizer.decision.governance import governance_breaches, violations
from llm_optimizer.decision.models import (
    Action,
    CandidateFate,
    Check,
    Decision,
    DecisionInput,
    Profile,
)
from llm_optimizer.exploration import RETRYABLE
from llm_optimizer.objectives import Objectives, pareto_frontier, weighted_gain


def decide(inp: DecisionInput) -> Decision:
    checks: list[Check] = []
    fates: dict[str, CandidateFate] = {}

    def done(action: Action, rationale: str, default_fate: str | None = None, **fields) -> Decision:
        # Every offered candidate leaves with a fate: the ones not reached take the decision's own reason.
        for c in inp.candidates:
            if c.key == inp.current.key:
                fates.setdefault(c.key, _candidate_fate(c, "skipped", "it is the live config"))
            fates.setdefault(c.key, _candidate_fate(c, "skipped", default_fate or f"not considered: {rationale}"))
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
                confidence=confidence_meets_floor(backup, floor),
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
    frontier = pareto_frontier([inp.current, *measured], lambda p: p.outcome)
    for c in measured:
        if c not in frontier:
            fates[c.key] = _candidate_fate(
                c, "skipped", "dominated: another candidate is as cheap, as good and as fast"
            )
    ranked = sorted(
        (c for c in measured if c in frontier),
        key=lambda c: weighted_gain(inp.current.outcome, c.outcome, objectives),
        reverse=True,
    )
    for candidate in ranked:
        gain = weighted_gain(inp.current.outcome, candidate.outcome, objectives)
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
            fates[candidate.key] = _candidate_fate(
                candidate, "skipped", f"weighted gain {gain:+.1%} < minimum {minimum:.0%}"
            )
            continue
        confidence = confidence_meets_floor(candidate, floor)
        if confidence < inp.preset.min_confidence:
            checks.append(
                Check(
                    name=f"confidence in {candidate.key}",
                    kind="objective",
                    passed=False,
                    detail=f"{confidence:.2f} < {inp.preset.min_confidence}",
                )
            )
            fates[candidate.key] = _candidate_fate(
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
            fates[candidate.key] = _candidate_fate(
                candidate,
                "skipped",
                f"probability {risk:.2f} that it is worse than the live config on the weighted score > max risk "
                f"{inp.preset.max_risk}",
            )
            continue
        impact = expected_impact(inp.current, candidate)
        fates[candidate.key] = _candidate_fate(candidate, "proposed", f"canary: {describe_impact(impact)}")
        return done(
            Action.canary,
            f"canary {candidate.key}: {describe_impact(impact)}; quality stays above the floor with confidence "
            f"{confidence:.2f}",
            candidate=candidate,
            confidence=confidence,
            expected_impact=impact,
            default_fate="waits: a measured candidate is rolled out first",
        )

    # 4. Exploration of the candidates not measured yet.
    worth = []
    for candidate in unmeasured:
        gain = weighted_gain(inp.current.outcome, candidate.outcome, objectives)  # unknown quality counts as unchanged
        if candidate.cost_per_request is not None and gain < minimum:
            fates[candidate.key] = _candidate_fate(
                candidate, "skipped", f"its cost gives a weighted gain of {gain:+.1%} at best (minimum {minimum:.0%})"
            )
        elif not inp.guards.explore_unobserved:
            fates[candidate.key] = _candidate_fate(candidate, "skipped", "not measured yet and exploration is disabled")
        elif over_budget:
            fates[candidate.key] = _candidate_fate(
                candidate, "skipped", "not measured yet; no exploration while over budget"
            )
        else:
            worth.append(candidate)
    # Which ones first, when there are more than an exploration takes: a Thompson draw on each one's canary record.
    worth = _thompson_order_of_unobserved(worth, inp, checks)
    arms, waiting = worth[: inp.guards.explore_max_arms], worth[inp.guards.explore_max_arms :]
    for c in waiting:
        fates[c.key] = _candidate_fate(
            c, "skipped", f"waits: at most {inp.guards.explore_max_arms} arms are explored at once"
        )
    # Every unmeasured candidate, a single one included, is measured in the exploration slice first: its share is
    # bounded, and a canary starts only from measured evidence (a canary's first stage alone is 5% or more).
    if arms:
        for c in arms:
            fates[c.key] = _candidate_fate(c, "exploring", "measured on a share of real traffic with the other arms")
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


def _candidate_fate(candidate: Profile, fate: str, reason: str) -> CandidateFate:
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
    return floor is not None and inp.current.quality_known and quality_upper_bound(inp.current) < floor


def _backup(inp: DecisionInput, checks: list[Check]) -> Profile | None:
    """For a latency or error-rate breach: the best observed candidate that meets every limit itself."""
    observed = [
        c for c in inp.candidates if c.key != inp.current.key and c.quality_known and c.latency_p95_ms is not None
    ]
    usable = _screen(observed, inp, checks, label="backup", kind="safety")
    return max(usable, key=lambda c: weighted_gain(inp.current.outcome, c.outcome, inp.objectives), default=None)


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
            fates[candidate.key] = _candidate_fate(candidate, "skipped", "; ".join(problems))
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
