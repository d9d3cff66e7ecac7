"""The cycle's rollbacks: an operator's (to the live version's parent, or to a version they name) and a decision's,
both one `set_traffic` of all traffic to the target. Deterministic: workflow code only."""

from __future__ import annotations

from temporalio import workflow
from temporalio.exceptions import ActivityError

from workflows.cycle_books import CycleBooks
from workflows.options import ACTIVITY
from workflows.traffic import set_traffic

with workflow.unsafe.imports_passed_through():
    from activities.rollout import RolloutActivities
    from llm_optimizer import ids
    from llm_optimizer import memory as memory_rules
    from llm_optimizer.payloads import CycleRecord, CycleState, Observation
    from workflows.handlers import refuse


async def operator_rollback(cycle: CycleBooks, observation: Observation, record: CycleRecord) -> None:
    """The rollback an operator asked for (`rollback` with no rollout in flight, or with a target)."""
    request, cycle.rollback_request = cycle.rollback_request, None
    assert request is not None  # the caller checked
    target = request.target_version or observation.parent_version
    record.action = "rollback"
    if target is None or observation.active_version is None:
        record.rationale = "rollback requested but the live version has no parent to return to"
        refuse(cycle.carried, "rollback", record.rationale)
        return
    await apply_rollback(cycle, target, f"operator: {request.reason or 'manual rollback'}", record)


async def apply_rollback(cycle: CycleBooks, target: str, reason: str, record: CycleRecord) -> None:
    await cycle.transition(CycleState.ROLLING_BACK, reason)
    cycle.show(f"rolling back to {target}: {reason}")
    try:
        await set_traffic(
            ids.rollback_change_id(cycle.settings.service, record.cycle_id),
            cycle.settings.service,
            target,
            None,
            0,
            summary=f"roll back: all traffic to {target}",
        )
    except ActivityError as err:
        # Only what can never succeed gets here (workflows/options.py TRAFFIC retries the rest): the split is
        # unchanged, and the cycle goes on with an alert instead of staying in ROLLING_BACK.
        record.rationale = reason
        record.outcome = await cycle.alert(
            f"rollback to {target} failed, traffic unchanged: {err.cause or err}", "rollback"
        )
        return
    record.rationale, record.outcome = reason, f"rolled back to {target}"
    cycle.set_active(target)
    cycle.carried.memory = memory_rules.after_rollback(cycle.carried.memory, workflow.now())


async def missing_target(cycle: CycleBooks, version: str) -> str | None:
    """Why a rollback to `version` is refused (it is not a version of this service), or None."""
    # Added after histories were recorded: patched() keeps those replaying.
    if not workflow.patched("rollback-target-exists"):
        return None
    service = cycle.input.service
    try:
        exists = await workflow.execute_activity_method(
            RolloutActivities.version_exists,
            args=[service, version],
            summary=f"is {version} a version of {service}? (rollback target)",
            **ACTIVITY,
        )
    except ActivityError as err:
        return f"target_version = {version!r}: could not be checked ({err.cause or err})"
    return None if exists else f"target_version = {version!r}: no such version of service {service!r}"
