"""The partitions of `events`: one per day (or hour, `database.event_partition`), made ahead, dropped whole.

`events` is partitioned by range of `ts` (migration 0009). A default partition catches what no partition covers
(a backfill of last year, a clock far ahead), so an event is never refused for its time. `ensure` makes the
partitions of a span of time, moving into each new one the rows the default partition already holds for it;
`drop_before` drops the partitions that end before a cutoff and deletes older rows from the default partition.
A partition is named by the instant it starts (UTC): `events_p20261204_0000`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import psycopg

from storage.db import one

UNITS = {"day": timedelta(days=1), "hour": timedelta(hours=1)}
DEFAULT = "events_default"
# Set on every partition (a partitioned table takes no storage parameters): vacuum after every 50,000 inserts,
# not 20% of the partition, which keeps recent pages all-visible for the loop's index-only scans.
STORAGE = "autovacuum_vacuum_insert_threshold = 50000, autovacuum_vacuum_insert_scale_factor = 0"

_BOUNDS = r"""
SELECT c.relname, b.expr = 'DEFAULT',
       (regexp_match(b.expr, $$FROM \('([^']*)'\)$$))[1]::timestamptz,
       (regexp_match(b.expr, $$TO \('([^']*)'\)$$))[1]::timestamptz
FROM pg_inherits i
JOIN pg_class c ON c.oid = i.inhrelid
CROSS JOIN LATERAL (SELECT pg_get_expr(c.relpartbound, c.oid) AS expr) b
WHERE i.inhparent = 'events'::regclass
ORDER BY 3 NULLS FIRST
"""


@dataclass(frozen=True)
class Partition:
    name: str
    start: datetime | None  # None: MINVALUE (a table converted by migration 0009 covers all the past)
    end: datetime | None  # None: MAXVALUE
    default: bool = False


def partitions(conn: psycopg.Connection) -> list[Partition]:
    """The partitions of `events`, the default one first, then by start."""
    rows = conn.execute(_BOUNDS).fetchall()
    found = [Partition(name, start, end, default) for name, default, start, end in rows]
    return sorted(found, key=lambda p: (not p.default, p.start or datetime.min.replace(tzinfo=UTC)))


def floor(instant: datetime, unit: str) -> datetime:
    """The start of the day or hour (UTC) that `instant` falls in."""
    instant = instant.astimezone(UTC)
    if unit == "day":
        return instant.replace(hour=0, minute=0, second=0, microsecond=0)
    return instant.replace(minute=0, second=0, microsecond=0)


def name_of(start: datetime) -> str:
    return f"events_p{start.astimezone(UTC):%Y%m%d_%H%M}"


def ensure(conn: psycopg.Connection, start: datetime, end: datetime, unit: str) -> list[str]:
    """Partitions covering [floor(start), end) in slots of `unit`, where none covers them yet; returns the names
    made. A slot partly covered (the partitions were hourly, now they are daily) gets the uncovered rest."""
    if unit not in UNITS:
        raise ValueError(f"database.event_partition = {unit!r}: must be one of {', '.join(UNITS)}")
    covered = [(p.start, p.end) for p in partitions(conn) if not p.default]
    made = []
    slot = floor(start, unit)
    while slot < end:
        for lo, hi in _uncovered(slot, slot + UNITS[unit], covered):
            create(conn, lo, hi)
            covered.append((lo, hi))
            made.append(name_of(lo))
        slot += UNITS[unit]
    return made


def _uncovered(lo: datetime, hi: datetime, covered: list[tuple[datetime | None, datetime | None]]):
    """The pieces of [lo, hi) that no interval of `covered` (None: unbounded) overlaps."""
    pieces = [(lo, hi)]
    for c_lo, c_hi in covered:
        rest = []
        for p_lo, p_hi in pieces:
            if (c_hi is not None and c_hi <= p_lo) or (c_lo is not None and c_lo >= p_hi):
                rest.append((p_lo, p_hi))
                continue
            if c_lo is not None and c_lo > p_lo:
                rest.append((p_lo, c_lo))
            if c_hi is not None and c_hi < p_hi:
                rest.append((c_hi, p_hi))
        pieces = rest
    return pieces


def create(conn: psycopg.Connection, start: datetime, end: datetime) -> None:
    """The partition [start, end): made beside `events`, given the default partition's rows of that span, then
    attached (ATTACH does not block writers of the other partitions, as CREATE .. PARTITION OF would)."""
    name = name_of(start)
    with conn.transaction():
        conn.execute(f"CREATE TABLE {name} (LIKE events INCLUDING DEFAULTS INCLUDING CONSTRAINTS) WITH ({STORAGE})")
        if _has_default(conn):
            conn.execute(
                f"WITH moved AS (DELETE FROM {DEFAULT} WHERE ts >= %(start)s AND ts < %(end)s RETURNING *) "
                f"INSERT INTO {name} SELECT * FROM moved",
                {"start": start, "end": end},
            )
        # The bounds as literals: ATTACH takes no parameters. ISO text with its offset is unambiguous.
        conn.execute(
            f"ALTER TABLE events ATTACH PARTITION {name} "
            f"FOR VALUES FROM ('{start.isoformat()}') TO ('{end.isoformat()}')"
        )


def _has_default(conn: psycopg.Connection) -> bool:
    return one(conn.execute("SELECT to_regclass(%s) IS NOT NULL", (DEFAULT,)))[0]


def drop_before(conn: psycopg.Connection, cutoff: datetime) -> int:
    """Drop the partitions that end at or before `cutoff`, and delete the default partition's rows older than it,
    with their texts; returns the events gone (a dropped partition counts its rows as the planner last saw them,
    exact after ANALYZE; counted when it never was analyzed)."""
    gone = 0
    for p in partitions(conn):
        if p.default or p.end is None or p.end > cutoff:
            continue
        rows = one(conn.execute("SELECT reltuples FROM pg_class WHERE oid = %s::regclass", (p.name,)))[0]
        if rows < 0:
            rows = one(conn.execute(f"SELECT count(*) FROM {p.name}"))[0]
        span = "ts < %(end)s" if p.start is None else "ts >= %(start)s AND ts < %(end)s"
        conn.execute(f"DELETE FROM event_texts WHERE {span}", {"start": p.start, "end": p.end})
        conn.execute(f"DROP TABLE {p.name}")
        gone += int(rows)
    if _has_default(conn):
        conn.execute(
            "DELETE FROM event_texts WHERE ts < %s AND (event_id, ts) IN (SELECT event_id, ts FROM "
            f"{DEFAULT} WHERE ts < %s)",
            (cutoff, cutoff),
        )
        gone += conn.execute(f"DELETE FROM {DEFAULT} WHERE ts < %s", (cutoff,)).rowcount
    return gone
