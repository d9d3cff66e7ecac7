"""The one way workflows change a service's traffic split: the idempotent `set_traffic` activity."""

from __future__ import annotations

from temporalio import workflow

from workflows.options import TRAFFIC

with workflow.unsafe.imports_passed_through():
    from llm_optimizer.control import TrafficRequest


async def set_traffic(change_id: str, service: str, active: str, canary: str | None, percent: float) -> None:
    """`active` serves everything but `percent` of the keys, which go to `canary`; `change_id` keys the write.

    A split the registry refuses (a version that does not exist) raises ActivityError at once, not retried."""
    await workflow.execute_activity(
        "set_traffic",
        TrafficRequest(
            rollout_id=change_id,
            service=service,
            active_version=active,
            canary_version=canary,
            percent=percent,
        ),
        **TRAFFIC,
    )
