"""What the API's health checks read from Postgres."""

from __future__ import annotations

from datetime import datetime

import psycopg


def server_version(conn: psycopg.Connection) -> str:
    row = conn.execute("SHOW server_version").fetchone()
    assert row is not None
    return str(row[0])


def latest_decision_at(conn: psycopg.Connection) -> datetime | None:
    """When any cycle last decided, or None if none has yet."""
    row = conn.execute("SELECT max(made_at) FROM decisions").fetchone()
    return None if row is None else row[0]
