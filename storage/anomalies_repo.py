"""Sentinel's anomaly alerts (`anomalies` rows, landed by storage.events_repo): the high and critical ones a cycle
has not acted on yet, and the claim that makes each acted on once (column `handled_by`)."""

from __future__ import annotations

from typing import NamedTuple

import psycopg


class Alert(NamedTuple):
    anomaly_id: str
    anomaly_type: str
    severity: str


def unclaimed(conn: psycopg.Connection, service: str) -> list[Alert]:
    """The service's high and critical alerts nobody has claimed, oldest id first."""
    rows = conn.execute(
        "SELECT anomaly_id, anomaly_type, severity FROM anomalies WHERE service = %s AND handled_by IS NULL "
        "AND severity IN ('high', 'critical') ORDER BY anomaly_id",
        (service,),
    ).fetchall()
    return [Alert(*row) for row in rows]


def claim(conn: psycopg.Connection, ids: list[str], handler: str) -> None:
    """Claim the alerts `ids` for `handler` (those another handler claimed first stay its own)."""
    conn.execute(
        "UPDATE anomalies SET handled_by = %s WHERE anomaly_id = ANY(%s) AND handled_by IS NULL", (handler, ids)
    )


def take(conn: psycopg.Connection, service: str, handler: str) -> list[Alert]:
    """Claim the service's unclaimed high and critical alerts for `handler` and answer them, in one statement."""
    rows = conn.execute(
        "UPDATE anomalies SET handled_by = %s WHERE service = %s AND handled_by IS NULL "
        "AND severity IN ('high', 'critical') RETURNING anomaly_id, anomaly_type, severity",
        (handler, service),
    ).fetchall()
    return [Alert(*row) for row in rows]
