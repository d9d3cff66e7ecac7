"""rollups

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22 04:03:11.397614
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "rollup_watermarks",
        sa.Column("rollup", sa.Text(), nullable=False),
        sa.Column("complete_until", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("rollup", name=op.f("pk_rollup_watermarks")),
    )
    op.create_table(
        "rollups_1h",
        sa.Column("bucket", sa.DateTime(timezone=True), nullable=False),
        sa.Column("service", sa.Text(), nullable=False),
        sa.Column("model", sa.Text(), nullable=False),
        sa.Column("config_version", sa.Text(), nullable=False),
        sa.Column("variant", sa.Text(), nullable=False),
        sa.Column("requests", sa.BigInteger(), nullable=False),
        sa.Column("errors", sa.BigInteger(), nullable=False),
        sa.Column("timeouts", sa.BigInteger(), nullable=False),
        sa.Column("latency_sum_ms", sa.Float(), nullable=False),
        sa.Column("latency_p95_ms", sa.Float(), nullable=False),
        sa.Column("tokens_in_sum", sa.BigInteger(), nullable=False),
        sa.Column("tokens_out_sum", sa.BigInteger(), nullable=False),
        sa.Column("cost_sum_usd", sa.Float(), nullable=False),
        sa.Column("quality_sum", sa.Float(), nullable=False),
        sa.Column("quality_n", sa.BigInteger(), nullable=False),
        sa.Column("feedback_n", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("bucket", "service", "model", "config_version", "variant", name=op.f("pk_rollups_1h")),
    )
    op.create_index(op.f("ix_rollups_1h_service_bucket"), "rollups_1h", ["service", "bucket"], unique=False)
    op.create_table(
        "rollups_1m",
        sa.Column("bucket", sa.DateTime(timezone=True), nullable=False),
        sa.Column("service", sa.Text(), nullable=False),
        sa.Column("model", sa.Text(), nullable=False),
        sa.Column("config_version", sa.Text(), nullable=False),
        sa.Column("variant", sa.Text(), nullable=False),
        sa.Column("requests", sa.BigInteger(), nullable=False),
        sa.Column("errors", sa.BigInteger(), nullable=False),
        sa.Column("timeouts", sa.BigInteger(), nullable=False),
        sa.Column("latency_sum_ms", sa.Float(), nullable=False),
        sa.Column("latency_p95_ms", sa.Float(), nullable=False),
        sa.Column("tokens_in_sum", sa.BigInteger(), nullable=False),
        sa.Column("tokens_out_sum", sa.BigInteger(), nullable=False),
        sa.Column("cost_sum_usd", sa.Float(), nullable=False),
        sa.Column("quality_sum", sa.Float(), nullable=False),
        sa.Column("quality_n", sa.BigInteger(), nullable=False),
        sa.Column("feedback_n", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("bucket", "service", "model", "config_version", "variant", name=op.f("pk_rollups_1m")),
    )
    op.create_index(op.f("ix_rollups_1m_service_bucket"), "rollups_1m", ["service", "bucket"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_rollups_1m_service_bucket"), table_name="rollups_1m")
    op.drop_table("rollups_1m")
    op.drop_index(op.f("ix_rollups_1h_service_bucket"), table_name="rollups_1h")
    op.drop_table("rollups_1h")
    op.drop_table("rollup_watermarks")
