"""a stage verdict row records which try of its judge (Temporal's activity attempt) wrote it

A judge cut off from Temporal but not from Postgres is timed out and retried; the retry writes and completes, and the
first may still finish its wait and write after it. The row keeps the write of the latest try
(storage/audit_repo.record_verdict). Rows stored before were written by a first try as far as anyone knows.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-08 00:20:00
"""

from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE rollout_verdicts ADD COLUMN judged_by_try integer NOT NULL DEFAULT 1")


def downgrade() -> None:
    op.drop_column("rollout_verdicts", "judged_by_try")
