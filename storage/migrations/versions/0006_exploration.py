"""exploration arms in the assignment, every candidate's fate in the decision

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02 18:00:00
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "config_assignments",
        sa.Column("explore", postgresql.JSONB(), server_default=sa.text("'{}'::jsonb"), nullable=False),
    )
    op.add_column(
        "decisions",
        sa.Column("candidates", postgresql.JSONB(), server_default=sa.text("'[]'::jsonb"), nullable=False),
    )


def downgrade() -> None:
    op.drop_column("decisions", "candidates")
    op.drop_column("config_assignments", "explore")
