"""1-minute and 1-hour rollups of the raw events, kept incrementally, and the expiry of old raw events.

Each run recomputes whole buckets from the previous watermark on (so a bucket that was still filling last time is
completed, and a re-run writes the same rows), then moves the watermark. Raw events older than the retention and
than every watermark go, a whole partition at a time (storage/partitions_repo.py): what they said stays in the
rollups.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import psycopg

from storage import partitions_repo
from storage.db import one

ROLLUPS = {"rollups_1m": "minute", "rollups_1h": "hour"}

_COLUMNS = (
    "bucket, service, model, config_version, variant, requests, errors, timeouts, latency_sum_ms, latency_p95_ms, "
    "tokens_in_sum, tokens_out_sum, cost_sum_usd, quality_sum, quality_n, feedback_n"
)
_UPDATES = ", ".join(f"{c} = EXCLUDED.{c}" for c in _COLUMNS.split(", ")[5:])


def watermark(conn: psycopg.Connection, rollup: str) -> datetime | None:
    row = conn.execute("SELECT complete_until FROM rollup_watermarks WHERE rollup = %s", (rollup,)).fetchone()
    return row[0] if row else None


def roll_up(conn: psycopg.Connection, rollup: str, until: datetime) -> int:
    """Recompute the buckets of `rollup` from its watermark (or the oldest event) to `until`; returns the rows."""
    unit = ROLLUPS[rollup]
    start = watermark(conn, rollup) or one(conn.execute("SELECT min(ts) FROM events"))[0]
    if start is None:
        return 0
    cur = conn.execute(
        f"""
        INSERT INTO {rollup} ({_COLUMNS})
        SELECT date_trunc(%(unit)s, ts), service, model, coalesce(config_version, ''), coalesce(variant, ''),
               count(*), count(*) FILTER (WHERE status <> 'ok'), count(*) FILTER (WHERE status = 'timeout'),
               sum(latency_ms), percentile_cont(0.95) WITHIN GROUP (ORDER BY latency_ms),
               coalesce(sum(tokens_in), 0), coalesce(sum(tokens_out), 0),  -- the known counts (NULL: unreported)
               coalesce(sum(cost_usd), 0), coalesce(sum(quality_score), 0),
               count(quality_score), count(user_feedback)
        FROM events
        WHERE ts >= date_trunc(%(unit)s, %(start)s::timestamptz) AND ts < %(until)s
        GROUP BY 1, 2, 3, 4, 5
        ON CONFLICT (bucket, service, model, config_version, variant) DO UPDATE SET {_UPDATES}
        """,
        {"unit": unit, "start": start, "until": until},
    )
    # Buckets before the one `until` falls in are complete; that one is recomputed next time.
    conn.execute(
        "INSERT INTO rollup_watermarks (rollup, complete_until) VALUES (%s, date_trunc(%s, %s::timestamptz)) "
        "ON CONFLICT (rollup) DO UPDATE SET complete_until = greatest(rollup_watermarks.complete_until, "
        "EXCLUDED.complete_until)",
        (rollup, unit, until),
    )
    return cur.rowcount


def expire(conn: psycopg.Connection, now: datetime, retention: timedelta) -> int:
    """Drop the partitions of raw events that end before the retention's cutoff and before every rollup's
    watermark (a partition waits until all of it may go); returns the events gone."""
    marks = [mark for r in ROLLUPS if (mark := watermark(conn, r)) is not None]
    if len(marks) < len(ROLLUPS):
        return 0
    return partitions_repo.drop_before(conn, min([now - retention, *marks]))
