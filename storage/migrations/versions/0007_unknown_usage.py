"""token counts a span did not report stay unknown (NULL), never zero

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04 02:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Only the constraint changes: rows stored before keep their counts (0 where usage was unknown, which nothing
    # can now tell apart from a real 0).
    for column in ("tokens_in", "tokens_out"):
        op.alter_column("events", column, existing_type=sa.Integer(), nullable=True)


def downgrade() -> None:
    # The old schema has no word for unknown: it goes back to the 0 it used to be stored as.
    for column in ("tokens_in", "tokens_out"):
        op.execute(f"UPDATE events SET {column} = 0 WHERE {column} IS NULL")
        op.alter_column("events", column, existing_type=sa.Integer(), nullable=False)
