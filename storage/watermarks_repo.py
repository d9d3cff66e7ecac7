"""Ingestion watermarks: how far each Kafka partition has landed, and which topics carry which service.

A partition's watermark (`complete_until`) is an event time before which all its records are in `events`: the
newest Kafka timestamp of what it has landed, or, when the consumer has caught up with the partition's end, the
moment it checked. A topic is complete up to its slowest partition. A service waits only for the topics that have
carried its events within `FEED_HORIZON`; a service none has (its events come over HTTP or OTLP, which land before
they answer) is complete at once (docs/architecture.md "Complete windows").
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import psycopg

# A topic that carried a service's events within this long still holds the service's judge back when it lags or
# stops: its consumer may be down with the events waiting in Kafka. Retiring a topic: docs/operations.md.
FEED_HORIZON = timedelta(hours=24)


def landed(
    conn: psycopg.Connection,
    topic: str,
    partitions: dict[int, tuple[int, datetime]],
    feeds: dict[str, datetime],
) -> None:
    """In the landing's transaction: each partition's (next offset, newest record time landed), and the newest event
    time of each service in the batch. Watermarks only move forward (a redelivery lands older records again)."""
    if partitions:
        conn.cursor().executemany(
            "INSERT INTO ingestion_watermarks (topic, partition, complete_until, committed_offset) "
            "VALUES (%s, %s, %s, %s) ON CONFLICT (topic, partition) DO UPDATE SET "
            "complete_until = greatest(ingestion_watermarks.complete_until, EXCLUDED.complete_until), "
            "committed_offset = greatest(ingestion_watermarks.committed_offset, EXCLUDED.committed_offset), "
            "updated_at = now()",
            # In key order, here and below: the Ingestion's consumers land at once, and rows locked in one order
            # cannot deadlock.
            [(topic, p, newest, offset) for p, (offset, newest) in sorted(partitions.items())],
        )
    if feeds:
        conn.cursor().executemany(
            "INSERT INTO ingestion_feeds (topic, service, last_event_at) VALUES (%s, %s, %s) "
            "ON CONFLICT (topic, service) DO UPDATE SET "
            "last_event_at = greatest(ingestion_feeds.last_event_at, EXCLUDED.last_event_at)",
            [(topic, service, at) for service, at in sorted(feeds.items())],
        )


def caught_up(conn: psycopg.Connection, topic: str, partitions: dict[int, datetime]) -> None:
    """Per partition, every record produced before its time has landed (the consumer is at the partition's end)."""
    conn.cursor().executemany(
        "INSERT INTO ingestion_watermarks (topic, partition, complete_until) VALUES (%s, %s, %s) "
        "ON CONFLICT (topic, partition) DO UPDATE SET "
        "complete_until = greatest(ingestion_watermarks.complete_until, EXCLUDED.complete_until), updated_at = now()",
        [(topic, p, until) for p, until in sorted(partitions.items())],
    )


@dataclass(frozen=True)
class Completeness:
    """How far a service's events have landed: `complete_until` is None when no Kafka topic carries them."""

    complete_until: datetime | None
    topic: str | None = None  # the topic furthest behind

    def covers(self, until: datetime) -> bool:
        return self.complete_until is None or self.complete_until >= until

    def behind(self, until: datetime) -> float:
        """Seconds between `until` and the watermark (0 when covered)."""
        if self.covers(until):
            return 0.0
        assert self.complete_until is not None
        return (until - self.complete_until).total_seconds()


def for_service(conn: psycopg.Connection, service: str) -> Completeness:
    row = conn.execute(
        "SELECT w.topic, min(w.complete_until) FROM ingestion_watermarks w "
        "JOIN ingestion_feeds f ON f.topic = w.topic "
        "WHERE f.service = %s AND f.last_event_at > now() - %s "
        "GROUP BY w.topic ORDER BY 2 LIMIT 1",
        (service, FEED_HORIZON),
    ).fetchone()
    return Completeness(complete_until=None) if row is None else Completeness(complete_until=row[1], topic=row[0])
