"""`StorageMaintenance`: roll raw events up into 1-minute and 1-hour buckets, then expire old raw events.

Once and return (`python -m starter.maintenance run`), or, with `every_s`, one long-running workflow that runs every
`every_s` with its own timer and continues as new (`python -m starter.maintenance schedule create`): one entry in the
workflow list instead of one per run."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow

from workflows.options import ACTIVITY

with workflow.unsafe.imports_passed_through():
    from activities.maintenance import MaintenanceActivities
    from llm_optimizer.payloads import MaintenanceReport, MaintenanceRequest
    from workflows.details import clock, minutes

RUNS_PER_HISTORY = 100


@workflow.defn(name="StorageMaintenance")
class StorageMaintenance:
    @workflow.init
    def __init__(self, request: MaintenanceRequest | None = None) -> None:
        self.request = request or MaintenanceRequest(now=workflow.now())
        self.last: MaintenanceReport | None = None

    @workflow.run
    async def run(self, request: MaintenanceRequest | None = None) -> MaintenanceReport:
        report = await self._once()
        if self.request.every_s is None:
            return report
        every = self.request.every_s
        for _ in range(RUNS_PER_HISTORY):
            await workflow.sleep(timedelta(seconds=every), summary=f"next run in {minutes(every)}")
            await self._once()
            if workflow.info().is_continue_as_new_suggested():
                break
        workflow.continue_as_new(self.request)

    async def _once(self) -> MaintenanceReport:
        request = self.request.model_copy(update={"now": workflow.now()})
        self.last = await workflow.execute_activity_method(
            MaintenanceActivities.maintain_storage,
            request,
            summary=f"roll up events older than {minutes(request.lateness_s)}, expire those past "
            f"{request.retention_days:g} days",
            **ACTIVITY,
        )
        self.request = self.request.model_copy(update={"runs_done": self.request.runs_done + 1})
        rows = ", ".join(f"{name}: {n}" for name, n in self.last.rollup_rows.items())
        every = f"every {minutes(self.request.every_s)}" if self.request.every_s else "once"
        workflow.set_current_details(
            f"**Storage maintenance, run {self.request.runs_done}** ({every}), at {clock(workflow.now())}: rollup "
            f"rows {rows or 'none'}; "
            f"{self.last.expired_events} raw events expired."
        )
        return self.last

    @workflow.query(description="The last run's report: rollup rows written and raw events expired.")
    def status(self, *inputs: object) -> MaintenanceReport | None:
        return self.last
