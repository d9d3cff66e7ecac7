"""covering index for the loop's reads of events, and insert-driven autovacuum

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22 05:10:00
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

INCLUDED = "model, provider, config_version, status, latency_ms, quality_score, cost_usd, tokens_in, tokens_out"


def upgrade() -> None:
    op.drop_index("ix_events_service_ts", table_name="events")
    op.execute(f"CREATE INDEX ix_events_service_ts ON events (service, ts) INCLUDE ({INCLUDED})")
    op.execute(
        "ALTER TABLE events SET (autovacuum_vacuum_insert_threshold = 50000, autovacuum_vacuum_insert_scale_factor = 0)"
    )


def downgrade() -> None:
    op.execute("ALTER TABLE events RESET (autovacuum_vacuum_insert_threshold, autovacuum_vacuum_insert_scale_factor)")
    op.drop_index("ix_events_service_ts", table_name="events")
    op.create_index("ix_events_service_ts", "events", ["service", "ts"])
