"""The cycles' audit trail: their transitions and signals as `optimization_events` rows (idempotent by record id),
and the operator-control metrics they imply."""

from __future__ import annotations

import psycopg
from temporalio import activity

from llm_optimizer.payloads import AuditRecord
from runtime import metrics
from storage import audit_repo
from storage.db import Database


class AuditActivities:
    """`audit` and `audit_batch`, on the worker's pool."""

    def __init__(self, db: Database):
        self.db = db

    @activity.defn(name="audit")
    async def audit(self, record: AuditRecord) -> int:
        """One row (the cycles recorded before `audit_batch`); answers how many rows it wrote."""
        return await self.audit_batch([record])

    @activity.defn(name="audit_batch")
    async def audit_batch(self, records: list[AuditRecord]) -> int:
        """A cycle's audit rows of one step (its transitions, a signal), in one transaction: one local activity
        in the history instead of one per row. Idempotent by record id; answers how many rows it was given."""

        def work(conn: psycopg.Connection) -> None:
            for record in records:
                audit_repo.record_event(conn, record)

        await self.db.run(work)
        for record in records:
            if record.event_type == "signal" and record.details.get("outcome") == "accepted":
                if record.triggered_by == "emergency_stop":
                    metrics.EMERGENCY_STOPS.labels(record.service).inc()
                elif record.triggered_by == "rollback":
                    metrics.ROLLBACKS.labels(record.service).inc()
        return len(records)
