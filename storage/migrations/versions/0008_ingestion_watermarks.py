"""ingestion watermarks: the event time up to which every partition of a topic has landed

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-04 02:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ingestion_watermarks",
        sa.Column("topic", sa.Text(), nullable=False),
        sa.Column("partition", sa.Integer(), nullable=False),
        sa.Column("complete_until", sa.DateTime(timezone=True), nullable=False),
        sa.Column("committed_offset", sa.BigInteger(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("topic", "partition", name="pk_ingestion_watermarks"),
    )
    op.create_table(
        "ingestion_feeds",
        sa.Column("topic", sa.Text(), nullable=False),
        sa.Column("service", sa.Text(), nullable=False),
        sa.Column("last_event_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("topic", "service", name="pk_ingestion_feeds"),
    )
    op.create_index("ix_ingestion_feeds_service", "ingestion_feeds", ["service"])


def downgrade() -> None:
    op.drop_index("ix_ingestion_feeds_service", table_name="ingestion_feeds")
    op.drop_table("ingestion_feeds")
    op.drop_table("ingestion_watermarks")
