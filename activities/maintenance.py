"""Storage maintenance: the partitions of events ahead of time, the rollups, and the expiry of raw events past the
retention (the `StorageMaintenance` workflow's one step)."""

from __future__ import annotations

from datetime import timedelta

import psycopg
from temporalio import activity

from activities.heartbeats import heartbeating
from llm_optimizer.payloads import MaintenanceReport, MaintenanceRequest
from llm_optimizer.settings import Settings
from storage import partitions_repo, rollups_repo
from storage.db import Database


class MaintenanceActivities:
    """`maintain_storage`, with the partitioning settings and the worker's pool."""

    def __init__(self, settings: Settings, db: Database):
        self.settings = settings
        self.db = db

    @activity.defn(name="maintain_storage")
    @heartbeating
    async def maintain_storage(self, request: MaintenanceRequest) -> MaintenanceReport:
        """Make the partitions of events ahead of `now`, roll up to `now - lateness`, then expire raw events past
        the retention, whole partitions at a time (idempotent)."""
        until = request.now - timedelta(seconds=request.lateness_s)
        unit = self.settings.database.event_partition
        ahead = partitions_repo.UNITS[unit] * self.settings.database.event_partitions_ahead

        def work(conn: psycopg.Connection) -> MaintenanceReport:
            made = partitions_repo.ensure(conn, request.now, request.now + ahead, unit)
            if made:
                activity.logger.info("made partitions of events: %s", ", ".join(made))
            rows = {rollup: rollups_repo.roll_up(conn, rollup, until) for rollup in rollups_repo.ROLLUPS}
            expired = rollups_repo.expire(conn, request.now, timedelta(days=request.retention_days))
            return MaintenanceReport(rollup_rows=rows, expired_events=expired)

        return await self.db.run(work)
