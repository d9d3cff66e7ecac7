"""`StorageMaintenance`: roll raw events up into 1-minute and 1-hour buckets, then expire old raw events.

A one-shot workflow that a Temporal Schedule starts periodically (`python -m starter.maintenance schedule`)."""

from __future__ import annotations

from temporalio import workflow

from workflows.options import ACTIVITY

with workflow.unsafe.imports_passed_through():
    from llm_optimizer.control import MaintenanceReport, MaintenanceRequest


@workflow.defn(name="StorageMaintenance")
class StorageMaintenance:
    @workflow.run
    async def run(self, request: MaintenanceRequest | None = None) -> MaintenanceReport:
        request = (request or MaintenanceRequest(now=workflow.now())).model_copy(update={"now": workflow.now()})
        return await workflow.execute_activity("maintain_storage", request, result_type=MaintenanceReport, **ACTIVITY)
