"""Storage maintenance: rollups and expiry of raw events, now or periodically (one long-running workflow).

python -m starter.maintenance run                      # once, and print the report
python -m starter.maintenance schedule create [--every 5m]
python -m starter.maintenance schedule delete
"""

from __future__ import annotations

from datetime import UTC, datetime

from llm_optimizer.payloads import MaintenanceReport, MaintenanceRequest
from runtime.temporal import exit_process
from starter import periodic
from starter.cycle import parse_every

JOB = periodic.Periodic(
    workflow="StorageMaintenance",
    schedule_id="storage-maintenance",
    make_input=lambda settings, args: MaintenanceRequest(
        now=datetime.now(UTC), retention_days=settings.database.event_retention_days
    ),
    every=lambda settings, args: parse_every(args.every),
    result_type=MaintenanceReport,
    summary="Storage maintenance: roll raw events up, expire old ones",
)


def main(argv: list[str] | None = None) -> int:
    return periodic.main(
        JOB, "python -m starter.maintenance", __doc__, argv, lambda p: p.add_argument("--every", default="5m")
    )


if __name__ == "__main__":
    exit_process(main())
