"""How the cycle's memory changes after a decision, a rollout, a rollback or an exploration. Pure: the workflow calls
these with `workflow.now()`, tests call them directly."""

from __future__ import annotations

from datetime import datetime

from llm_optimizer.decision import Action, Decision, ExploredArm, Memory
from llm_optimizer.exploration import RETRYABLE, ArmResult, QualityEstimate

ROLLBACKS_KEPT = 20


def after_decision(memory: Memory, decision: Decision, now: datetime) -> Memory:
    """The first decision fixes the reference (the floor's base); the rules' state and alert time carry on."""
    changes: dict = {}
    if memory.reference_quality is None and decision.reference_quality is not None:
        changes["reference_quality"] = decision.reference_quality
        changes["reference_version"] = decision.current_version
    if memory.reference is None and decision.reference is not None and decision.reference.n > 0:
        changes["reference"] = decision.reference
        changes.setdefault("reference_version", memory.reference_version or decision.current_version)
    if decision.rule_state is not None:  # rules' hold times and cooldowns, carried to the next decision
        changes["rule_state"] = decision.rule_state
    if decision.action is Action.alert:
        changes["last_alert_at"] = now
    return memory.model_copy(update=changes)


def after_rollout(memory: Memory, key: str, result: str, now: datetime) -> Memory:
    """A canary of candidate `key` ended: its record (the prior of the next Thompson draw) and the guards' times."""
    won, lost = memory.canary_outcomes.get(key, (0, 0))
    promoted, rolled_back = result == "promoted", result == "rolled_back"
    changes: dict = {
        "last_change_at": now,
        "canary_outcomes": {**memory.canary_outcomes, key: (won + promoted, lost + rolled_back)},
    }
    if rolled_back:
        changes["rollbacks"] = [*memory.rollbacks, now][-ROLLBACKS_KEPT:]
        changes["rolled_back_models"] = {**memory.rolled_back_models, key: now}
    return memory.model_copy(update=changes)


def after_rollback(memory: Memory, now: datetime) -> Memory:
    return memory.model_copy(update={"last_change_at": now, "rollbacks": [*memory.rollbacks, now][-ROLLBACKS_KEPT:]})


def after_exploration(
    memory: Memory,
    arms: list[ArmResult],
    live_version: str,
    live_quality: QualityEstimate | None,
    *,
    since: datetime,
    now: datetime,
) -> Memory:
    """Every arm's measurements and fate are kept (the next decision prices and judges it from them), and while the
    live config is the reference its quality during the exploration is pooled into the reference."""
    explored = {r.key: ExploredArm(since=_first_since(memory, r.key, since), at=now, result=r) for r in arms}
    changes: dict = {"explored": {**memory.explored, **explored}}
    if live_quality is not None and live_quality.n > 0 and memory.reference_version == live_version:
        pooled = memory.reference.pooled(live_quality) if memory.reference is not None else live_quality
        changes["reference"] = pooled
        changes["reference_quality"] = pooled.mean
    return memory.model_copy(update=changes)


def _first_since(memory: Memory, key: str, since: datetime) -> datetime:
    """An arm explored again after being deferred or dominated has measured since its first exploration (its
    evidence is pooled)."""
    before = memory.explored.get(key)
    if before is not None and before.result.fate in RETRYABLE and before.since is not None:
        return min(before.since, since)
    return since
