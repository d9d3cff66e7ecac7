"""Storage maintenance: rollups and expiry of raw events, now or on a Temporal Schedule.

python -m starter.maintenance run                      # once, and print the report
python -m starter.maintenance schedule create [--every 5m]
python -m starter.maintenance schedule delete
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import uuid
from datetime import UTC, datetime

from temporalio.client import Schedule, ScheduleActionStartWorkflow, ScheduleIntervalSpec, ScheduleSpec

from llm_optimizer.control import MaintenanceReport, MaintenanceRequest
from llm_optimizer.errors import OptimizerError
from llm_optimizer.settings import load_settings
from starter.client import connect_client
from starter.cycle import parse_every

SCHEDULE_ID = "storage-maintenance"


async def main_async(args: argparse.Namespace) -> int:
    settings = load_settings()
    client = await connect_client(settings)
    request = MaintenanceRequest(now=datetime.now(UTC), retention_days=settings.database.event_retention_days)
    if args.command == "run":
        report = await client.execute_workflow(
            "StorageMaintenance",
            request,
            id=f"storage-maintenance/{uuid.uuid4().hex[:8]}",
            task_queue=settings.temporal.task_queue,
            result_type=MaintenanceReport,
        )
        print(report.model_dump_json(indent=2))
    elif args.action == "create":
        await client.create_schedule(
            SCHEDULE_ID,
            Schedule(
                action=ScheduleActionStartWorkflow(
                    "StorageMaintenance", request, id=SCHEDULE_ID, task_queue=settings.temporal.task_queue
                ),
                spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=parse_every(args.every))]),
            ),
        )
        print(f"created schedule {SCHEDULE_ID}: every {args.every}")
    else:
        await client.get_schedule_handle(SCHEDULE_ID).delete()
        print(f"deleted schedule {SCHEDULE_ID}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m starter.maintenance", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("command", choices=["run", "schedule"])
    parser.add_argument("action", nargs="?", choices=["create", "delete"])
    parser.add_argument("--every", default="5m")
    args = parser.parse_args(argv)
    if args.command == "schedule" and not args.action:
        parser.error("schedule needs create or delete")
    try:
        return asyncio.run(main_async(args))
    except OptimizerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
