"""Storage maintenance: rollups and expiry of raw events, now or periodically (one long-running workflow).

    llm-optimizer maintenance run                      # once, and print the report
    llm-optimizer maintenance schedule create [--every 5m]
    llm-optimizer maintenance schedule delete

A run rolls raw events up into the 1-minute and 1-hour rollups and drops the partitions of raw events older than
database.event_retention_days once the rollups cover them (docs/operations.md, "Storage maintenance"); the worker
must be running.
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime

from llm_optimizer.ids import STORAGE_MAINTENANCE_ID
from llm_optimizer.payloads import MaintenanceReport, MaintenanceRequest
from runtime.temporal import exit_process
from starter import periodic
from starter.cycle import parse_every

JOB = periodic.Periodic(
    workflow="StorageMaintenance",
    schedule_id=STORAGE_MAINTENANCE_ID,
    make_input=lambda settings, args: MaintenanceRequest(
        now=datetime.now(UTC), retention_days=settings.database.event_retention_days
    ),
    every=lambda settings, args: parse_every(args.every),
    result_type=MaintenanceReport,
    summary="Storage maintenance: roll raw events up, expire old ones",
)


def _every(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--every", default="5m", help="for schedule create: 30s, 5m, 1h, ... (default 5m)")


def build_parser(prog: str = "python -m starter.maintenance") -> argparse.ArgumentParser:
    return periodic.build_parser(prog, __doc__, _every)


def main(argv: list[str] | None = None, prog: str = "python -m starter.maintenance") -> int:
    return periodic.main(JOB, prog, __doc__, argv, _every)


if __name__ == "__main__":
    exit_process(main())
