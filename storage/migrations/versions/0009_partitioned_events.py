"""events partitioned by range of ts; an event is identified by (event_id, ts); texts keyed the same way

The table as it stands becomes the first partition (FROM MINVALUE to the day after its newest row), so no row is
copied: only the (event_id, ts) index is built on it. Daily partitions follow for the next days, and a default
partition catches any time no partition covers; `StorageMaintenance` makes partitions ahead from then on
(storage/partitions_repo.py). The texts of events lose their foreign key (one to a partitioned table would block
dropping a partition) and gain the event's ts: they are expired with their partition.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-04 02:30:00
"""

from datetime import UTC, datetime, timedelta

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

INCLUDED = "model, provider, config_version, status, latency_ms, quality_score, cost_usd, tokens_in, tokens_out"
STORAGE = "autovacuum_vacuum_insert_threshold = 50000, autovacuum_vacuum_insert_scale_factor = 0"
DAYS_AHEAD = 3


def _indexes(table: str, prefix: str) -> None:
    op.execute(f"CREATE INDEX {prefix}_service_ts ON {table} (service, ts) INCLUDE ({INCLUDED})")
    op.execute(f"CREATE INDEX {prefix}_ts ON {table} (ts)")


def upgrade() -> None:
    conn = op.get_bind()
    op.drop_constraint("fk_event_texts_event_id_events", "event_texts", type_="foreignkey")
    op.execute("ALTER TABLE event_texts ADD COLUMN ts timestamptz")
    op.execute("UPDATE event_texts t SET ts = e.ts FROM events e WHERE e.event_id = t.event_id")
    op.execute("ALTER TABLE event_texts ALTER COLUMN ts SET NOT NULL")  # the foreign key made every text have one
    op.execute("ALTER TABLE event_texts DROP CONSTRAINT pk_event_texts")
    op.execute("ALTER TABLE event_texts ADD CONSTRAINT pk_event_texts PRIMARY KEY (event_id, ts)")
    op.execute("CREATE INDEX ix_event_texts_ts ON event_texts (ts)")

    op.execute("ALTER TABLE events RENAME TO events_legacy")
    op.execute("ALTER TABLE events_legacy DROP CONSTRAINT pk_events")
    op.execute("ALTER INDEX ix_events_service_ts RENAME TO ix_events_legacy_service_ts")
    op.execute("ALTER INDEX ix_events_ts RENAME TO ix_events_legacy_ts")
    # Whatever columns, defaults and checks the table has by now (earlier migrations may have changed them).
    op.execute(
        "CREATE TABLE events (LIKE events_legacy INCLUDING DEFAULTS INCLUDING CONSTRAINTS) PARTITION BY RANGE (ts)"
    )
    op.execute("ALTER TABLE events ADD CONSTRAINT pk_events PRIMARY KEY (event_id, ts)")
    _indexes("events", "ix_events")

    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    newest = conn.exec_driver_sql("SELECT max(ts) FROM events_legacy").scalar()
    if newest is None:
        op.execute("DROP TABLE events_legacy")
        start = today
    else:
        start = max(today, newest.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)) + timedelta(1)
        # Its (service, ts) and ts indexes match the parent's and are attached as they are; the key is built.
        op.execute(
            f"ALTER TABLE events ATTACH PARTITION events_legacy FOR VALUES FROM (MINVALUE) TO ('{start.isoformat()}')"
        )
        op.execute(f"ALTER TABLE events_legacy RENAME TO events_before_{start:%Y%m%d}")
    day = start
    while day < today + timedelta(days=DAYS_AHEAD):
        op.execute(
            f"CREATE TABLE events_p{day:%Y%m%d_%H%M} PARTITION OF events "
            f"FOR VALUES FROM ('{day.isoformat()}') TO ('{(day + timedelta(1)).isoformat()}') WITH ({STORAGE})"
        )
        day += timedelta(1)
    op.execute(f"CREATE TABLE events_default PARTITION OF events DEFAULT WITH ({STORAGE})")


def downgrade() -> None:
    op.execute("CREATE TABLE events_flat (LIKE events INCLUDING DEFAULTS INCLUDING CONSTRAINTS)")
    # The flat table holds one row an event id: of the same id at several times, the earliest stays.
    op.execute("INSERT INTO events_flat SELECT DISTINCT ON (event_id) * FROM events ORDER BY event_id, ts")
    op.execute("DROP TABLE events")
    op.execute("ALTER TABLE events_flat RENAME TO events")
    op.execute("ALTER TABLE events ADD CONSTRAINT pk_events PRIMARY KEY (event_id)")
    _indexes("events", "ix_events")
    op.execute(f"ALTER TABLE events SET ({STORAGE})")

    op.execute("DROP INDEX ix_event_texts_ts")
    op.execute(
        "DELETE FROM event_texts t WHERE NOT EXISTS (SELECT 1 FROM events e WHERE e.event_id = t.event_id "
        "AND e.ts = t.ts)"
    )
    op.execute("ALTER TABLE event_texts DROP CONSTRAINT pk_event_texts")
    op.execute("ALTER TABLE event_texts DROP COLUMN ts")
    op.execute("ALTER TABLE event_texts ADD CONSTRAINT pk_event_texts PRIMARY KEY (event_id)")
    op.execute(
        "ALTER TABLE event_texts ADD CONSTRAINT fk_event_texts_event_id_events FOREIGN KEY (event_id) "
        "REFERENCES events (event_id) ON DELETE CASCADE"
    )
