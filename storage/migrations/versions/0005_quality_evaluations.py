"""event texts and quality evaluations

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-22 05:20:00
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "event_texts",
        sa.Column("event_id", sa.Text(), nullable=False),
        sa.Column("request_text", sa.Text(), nullable=True),
        sa.Column("response_text", sa.Text(), nullable=True),
        sa.Column("reference_text", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["event_id"], ["events.event_id"], name=op.f("fk_event_texts_event_id_events"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("event_id", name=op.f("pk_event_texts")),
    )
    op.create_table(
        "quality_evaluations",
        sa.Column("event_id", sa.Text(), nullable=False),
        sa.Column("evaluator", sa.Text(), nullable=False),
        sa.Column("service", sa.Text(), nullable=False),
        sa.Column("config_version", sa.Text(), nullable=True),
        sa.Column("evaluated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("overall_score", sa.Float(), nullable=True),
        sa.Column(
            "dimension_scores",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column("evaluation_method", sa.Text(), nullable=False),
        sa.Column("confidence", sa.Float(), nullable=True),
        sa.Column("cost_usd", sa.Float(), server_default="0", nullable=False),
        sa.Column("skipped_reason", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("event_id", "evaluator", name=op.f("pk_quality_evaluations")),
    )
    op.create_index(
        op.f("ix_quality_evaluations_service_evaluated_at"), "quality_evaluations", ["service", "evaluated_at"]
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_quality_evaluations_service_evaluated_at"), table_name="quality_evaluations")
    op.drop_table("quality_evaluations")
    op.drop_table("event_texts")
