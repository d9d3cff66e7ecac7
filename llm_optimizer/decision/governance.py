"""Governance: the hard limits a config must keep (error rate, p95 latency, the quality floor) and the policies a
candidate must meet (approved models, denied providers, approved regions), and what a governance service's verdict
does to a decision (docs/integrations.md)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from llm_optimizer.decision.estimates import quality_upper_bound
from llm_optimizer.decision.models import Action, Check, Constraints, Decision, Profile


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
    if floor is not None and profile.quality_known and quality_upper_bound(profile) < floor:
        found["quality_floor"] = f"quality {profile.quality_mean:.3f} below the floor {floor:.3f}"
    return found


def violations(profile: Profile, constraints: Constraints, floor: float | None) -> list[str]:
    """What `broken_limits` finds, in words."""
    return list(broken_limits(profile, constraints, floor).values())


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
