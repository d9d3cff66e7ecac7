"""ingestion watermarks: the event time up to which every partition of a topic has landed

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-04 02:00:00
"""

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
