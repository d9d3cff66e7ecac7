"""The one way workflows change a service's traffic split: the idempotent `set_traffic` activity."""

from __future__ import annotations

from temporalio import workflow

from workflows.options import TRAFFIC

with workflow.unsafe.imports_passed_through():
    from activities.rollout import RolloutActivities
    from llm_optimizer.payloads import RolloutRecord, TrafficRequest


async def set_traffic(
    change_id: str,
    service: str,
    active: str,
    canary: str | None,
    percent: float,
    *,
    summary: str | None = None,
    record: RolloutRecord | None = None,
) -> None:
    """`active` serves everything but `percent` of the keys, which go to `canary`; `change_id` keys the write.
    `summary` is what the Temporal UI shows for the step (by default, the split in words). `record`, a rollout's
    final record, is written in the split's transaction.

    A split the registry refuses (a version that does not exist) raises ActivityError at once, not retried."""
    if summary is None:
        summary = f"traffic: {percent:g}% to {canary}, the rest to {active}" if canary else f"traffic: all to {active}"
    await workflow.execute_activity_method(
        RolloutActivities.set_traffic,
        TrafficRequest(
            rollout_id=change_id,
            service=service,
            active_version=active,
            canary_version=canary,
            percent=percent,
            record=record,
        ),
        summary=summary,
        **TRAFFIC,
    )
